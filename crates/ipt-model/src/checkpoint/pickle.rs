//! A minimal, safe pickle machine for PyTorch state dicts.
//!
//! It understands the opcodes `torch.save` emits (protocol 2, plus the protocol 3–5 opcodes
//! for robustness) and builds plain values. No code is ever executed: `GLOBAL` may only name a
//! short allow-list (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter`, the `torch.*Storage` types, …) and `REDUCE` only applies
//! those, building [`Value`]s. Anything else is an error naming the opcode or the global.

use std::collections::HashMap;

/// Element type of a PyTorch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// `torch.FloatStorage`.
    Float,
    /// `torch.DoubleStorage`.
    Double,
    /// `torch.HalfStorage`.
    Half,
    /// `torch.BFloat16Storage`.
    BFloat16,
    /// `torch.LongStorage`.
    Long,
    /// `torch.IntStorage`.
    Int,
    /// `torch.ShortStorage`.
    Short,
    /// `torch.CharStorage` (int8).
    Char,
    /// `torch.ByteStorage` (uint8).
    Byte,
    /// `torch.BoolStorage`.
    Bool,
}

impl StorageKind {
    /// Every kind with its class name in the `torch` module (one table for reading and writing).
    const NAMES: [(Self, &'static str); 10] = [
        (Self::Float, "FloatStorage"),
        (Self::Double, "DoubleStorage"),
        (Self::Half, "HalfStorage"),
        (Self::BFloat16, "BFloat16Storage"),
        (Self::Long, "LongStorage"),
        (Self::Int, "IntStorage"),
        (Self::Short, "ShortStorage"),
        (Self::Char, "CharStorage"),
        (Self::Byte, "ByteStorage"),
        (Self::Bool, "BoolStorage"),
    ];

    fn from_global(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
    }

    /// The storage class's name in the `torch` module (`FloatStorage`, …).
    pub fn global_name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("FloatStorage", |(_, n)| n)
    }

    /// The storage kind of a libtorch element kind, if `torch.save` has one for it.
    pub fn from_kind(kind: tch::Kind) -> Option<Self> {
        Self::NAMES
            .iter()
            .map(|(k, _)| *k)
            .find(|k| k.kind() == kind)
    }

    /// Bytes per element.
    pub fn elem_size(self) -> usize {
        match self {
            Self::Double | Self::Long => 8,
            Self::Float | Self::Int => 4,
            Self::Half | Self::BFloat16 | Self::Short => 2,
            Self::Char | Self::Byte | Self::Bool => 1,
        }
    }

    /// The libtorch element kind.
    pub fn kind(self) -> tch::Kind {
        use tch::Kind;
        match self {
            Self::Float => Kind::Float,
            Self::Double => Kind::Double,
            Self::Half => Kind::Half,
            Self::BFloat16 => Kind::BFloat16,
            Self::Long => Kind::Int64,
            Self::Int => Kind::Int,
            Self::Short => Kind::Int16,
            Self::Char => Kind::Int8,
            Self::Byte => Kind::Uint8,
            Self::Bool => Kind::Bool,
        }
    }
}

/// A reference to a tensor: which storage, and how to view it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Element type.
    pub kind: StorageKind,
    /// Storage key: the file `data/<key>` in the archive.
    pub key: String,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// Shape.
    pub size: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// Values the machine builds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// An allowed global (a callable or class) not yet applied.
    Global(String, String),
    /// A persistent storage reference `('storage', type, key, location, numel)`.
    Storage {
        /// Element type.
        kind: StorageKind,
        /// Storage key.
        key: String,
    },
    /// A tensor built by `_rebuild_tensor_v2` (or a parameter wrapping one).
    Tensor(TensorRef),
}

/// Deepest nesting of containers (tuples, lists, dicts) the reader builds. A state dict needs
/// about five levels (dict → tensor arguments → size tuple); deeper pickles are refused with
/// [`PickleError::TooDeep`], so that no value is deep enough for its recursive drop, clone or
/// debug print to overflow the stack.
pub const MAX_DEPTH: usize = 256;

/// Most memory (bytes, estimated as the values' in-memory size plus their strings and byte
/// strings) the reader builds, memo copies included: 256 MiB. The `data.pkl` of a state dict
/// builds a few MB at most; more is refused with [`PickleError::TooLarge`], so that a small
/// pickle cannot blow up through repeated memo copies.
pub const MAX_BYTES: usize = 256 << 20;

/// Why a pickle was refused. Positions are byte offsets of the offending opcode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// The data ends inside an opcode or before `STOP`.
    #[error("pickle truncated in the opcode at byte {pos}")]
    Truncated {
        /// Offset of the opcode.
        pos: usize,
    },
    /// A `PROTO` opcode names a protocol above 5.
    #[error("pickle protocol {0} is not supported")]
    Protocol(u8),
    /// An opcode this reader does not implement.
    #[error("pickle opcode 0x{op:02x} at byte {pos} is not supported")]
    Opcode {
        /// The opcode.
        op: u8,
        /// Its offset.
        pos: usize,
    },
    /// A global outside the allow-list (the way pickles run code).
    #[error(
        "pickle refers to {module}.{name}, which this safe reader does not allow (only state \
         dicts of tensors are supported)"
    )]
    Forbidden {
        /// The global's module.
        module: String,
        /// The global's name.
        name: String,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error(
        "pickle nests containers more than {MAX_DEPTH} levels deep (at byte {pos}); a state \
         dict needs a handful"
    )]
    TooDeep {
        /// Offset of the opcode that went too deep.
        pos: usize,
    },
    /// More than [`MAX_BYTES`] of values built.
    #[error(
        "pickle builds more than {} MiB of values (at byte {pos}); a state dict needs a few",
        MAX_BYTES >> 20
    )]
    TooLarge {
        /// Offset of the opcode that went over.
        pos: usize,
    },
    /// Anything else that does not make sense (stack underflow, wrong argument types, …).
    #[error("malformed pickle at byte {pos}: {msg}")]
    Malformed {
        /// Offset of the opcode.
        pos: usize,
        /// What is wrong.
        msg: String,
    },
}

/// A [`PickleError`] before the position of its opcode is known.
#[derive(Debug)]
enum Fault {
    Truncated,
    Protocol(u8),
    Opcode(u8),
    Forbidden(String, String),
    TooDeep,
    TooLarge,
    Malformed(String),
}

impl Fault {
    fn at(self, pos: usize) -> PickleError {
        match self {
            Fault::Truncated => PickleError::Truncated { pos },
            Fault::Protocol(p) => PickleError::Protocol(p),
            Fault::Opcode(op) => PickleError::Opcode { op, pos },
            Fault::Forbidden(module, name) => PickleError::Forbidden { module, name },
            Fault::TooDeep => PickleError::TooDeep { pos },
            Fault::TooLarge => PickleError::TooLarge { pos },
            Fault::Malformed(msg) => PickleError::Malformed { pos, msg },
        }
    }
}

impl From<String> for Fault {
    fn from(msg: String) -> Self {
        Fault::Malformed(msg)
    }
}

impl From<&str> for Fault {
    fn from(msg: &str) -> Self {
        Fault::Malformed(msg.to_owned())
    }
}

/// At most 200 characters of a value's debug form, for messages (a value may be large).
fn brief(v: &Value) -> String {
    use std::fmt::Write;
    const LIMIT: usize = 200;
    struct Bounded(String);
    impl Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = LIMIT.saturating_sub(self.0.len());
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.0.push_str(&s[..cut]);
            Err(std::fmt::Error)
        }
    }
    let mut w = Bounded(String::new());
    if write!(w, "{v:?}").is_err() {
        w.0.push('…');
    }
    w.0
}

/// Global names the machine accepts. Anything else is refused.
fn allowed_global(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("collections", "OrderedDict")
            | ("torch._utils", "_rebuild_tensor_v2")
            | ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state")
            | ("builtins", "set")
            | ("__builtin__", "set")
            | ("torch", "Size")
    ) || (module == "torch" && StorageKind::from_global(name).is_some())
}

fn global(module: String, name: String) -> Result<Value, Fault> {
    if allowed_global(&module, &name) {
        Ok(Value::Global(module, name))
    } else {
        Err(Fault::Forbidden(module, name))
    }
}

/// A value on the stack or in the memo, with its nesting depth (1 for a scalar) and its
/// estimated memory in bytes (the whole tree).
#[derive(Clone)]
struct Node {
    value: Value,
    depth: usize,
    bytes: usize,
}

enum Item {
    Mark,
    V(Node),
}

/// Estimated memory of one value, without its children.
fn own_bytes(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::Str(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Global(m, n) => m.len() + n.len(),
            Value::Storage { key, .. } => key.len(),
            Value::Tensor(t) => t.key.len() + 8 * (t.size.len() + t.stride.len()),
            _ => 0,
        }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(Fault::Truncated)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, Fault> {
        Ok(u16::from_le_bytes(self.array()?) as usize)
    }
    fn u32(&mut self) -> Result<usize, Fault> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
    fn u64(&mut self) -> Result<usize, Fault> {
        usize::try_from(u64::from_le_bytes(self.array()?))
            .map_err(|_| Fault::Malformed("length does not fit in memory".into()))
    }
    fn line(&mut self) -> Result<String, Fault> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("unterminated text line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String, Fault> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| format!("bad UTF-8: {e}").into())
    }
}

struct Machine {
    stack: Vec<Item>,
    memo: HashMap<usize, Node>,
    /// Bytes built so far (see [`MAX_BYTES`]).
    built: usize,
}

impl Machine {
    fn spend(&mut self, bytes: usize) -> Result<(), Fault> {
        self.built = self.built.saturating_add(bytes);
        if self.built > MAX_BYTES {
            return Err(Fault::TooLarge);
        }
        Ok(())
    }
    fn pop(&mut self) -> Result<Node, Fault> {
        match self.stack.pop() {
            Some(Item::V(n)) => Ok(n),
            Some(Item::Mark) => Err("unexpected MARK on the stack".into()),
            None => Err("stack underflow".into()),
        }
    }
    fn top(&mut self) -> Result<&mut Node, Fault> {
        match self.stack.last_mut() {
            Some(Item::V(n)) => Ok(n),
            _ => Err("expected a value on top of the stack".into()),
        }
    }
    /// Pushes a scalar (or any value without children).
    fn leaf(&mut self, value: Value) -> Result<(), Fault> {
        let bytes = own_bytes(&value);
        self.spend(bytes)?;
        self.stack.push(Item::V(Node {
            value,
            depth: 1,
            bytes,
        }));
        Ok(())
    }
    /// Pushes a container made of `items`.
    fn container(
        &mut self,
        items: Vec<Node>,
        make: impl FnOnce(Vec<Value>) -> Value,
    ) -> Result<(), Fault> {
        let depth = 1 + items.iter().map(|n| n.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(Fault::TooDeep);
        }
        let own = std::mem::size_of::<Value>();
        self.spend(own)?;
        let bytes = own + items.iter().map(|n| n.bytes).sum::<usize>();
        let value = make(items.into_iter().map(|n| n.value).collect());
        self.stack.push(Item::V(Node {
            value,
            depth,
            bytes,
        }));
        Ok(())
    }
    /// Adds `items` to the container on top of the stack.
    fn extend_top(
        &mut self,
        items: Vec<Node>,
        add: impl FnOnce(&mut Value, Vec<Value>) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        let top = self.top()?;
        let depth = top
            .depth
            .max(1 + items.iter().map(|n| n.depth).max().unwrap_or(0));
        if depth > MAX_DEPTH {
            return Err(Fault::TooDeep);
        }
        top.depth = depth;
        top.bytes += items.iter().map(|n| n.bytes).sum::<usize>();
        add(&mut top.value, items.into_iter().map(|n| n.value).collect())
    }
    fn pop_mark(&mut self) -> Result<Vec<Node>, Fault> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(Item::Mark) => break,
                Some(Item::V(n)) => items.push(n),
                None => return Err("MARK not found".into()),
            }
        }
        items.reverse();
        Ok(items)
    }
    fn memo_put(&mut self, idx: usize) -> Result<(), Fault> {
        let bytes = self.top()?.bytes;
        self.spend(bytes)?;
        let node = self.top()?.clone();
        self.memo.insert(idx, node);
        Ok(())
    }
    fn memo_get(&mut self, idx: usize) -> Result<(), Fault> {
        let bytes = self
            .memo
            .get(&idx)
            .ok_or_else(|| format!("memo entry {idx} missing"))?
            .bytes;
        self.spend(bytes)?;
        let node = self.memo[&idx].clone();
        self.stack.push(Item::V(node));
        Ok(())
    }
}

fn as_usize(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(format!(
            "{what}: expected a non-negative int, got {}",
            brief(v)
        )),
    }
}

fn as_usizes(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(xs) | Value::List(xs) => xs.iter().map(|x| as_usize(x, what)).collect(),
        _ => Err(format!(
            "{what}: expected a tuple of ints, got {}",
            brief(v)
        )),
    }
}

/// Applies an allowed callable (REDUCE).
fn apply(module: &str, name: &str, args: Vec<Value>) -> Result<Value, String> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("builtins" | "__builtin__", "set") => Ok(Value::List(match args.into_iter().next() {
            Some(Value::List(v)) | Some(Value::Tuple(v)) => v,
            _ => Vec::new(),
        })),
        ("torch", "Size") => Ok(args.into_iter().next().unwrap_or(Value::Tuple(vec![]))),
        ("torch._utils", "_rebuild_tensor_v2") => {
            if args.len() < 4 {
                return Err(format!(
                    "_rebuild_tensor_v2 needs at least 4 arguments, got {}",
                    args.len()
                ));
            }
            let (kind, key) = match &args[0] {
                Value::Storage { kind, key } => (*kind, key.clone()),
                v => {
                    return Err(format!(
                        "_rebuild_tensor_v2: expected a storage, got {}",
                        brief(v)
                    ))
                }
            };
            let offset = as_usize(&args[1], "tensor storage offset")?;
            let size = as_usizes(&args[2], "tensor size")?;
            let stride = as_usizes(&args[3], "tensor stride")?;
            if size.len() != stride.len() {
                return Err(format!(
                    "tensor size {size:?} and stride {stride:?} differ in rank"
                ));
            }
            Ok(Value::Tensor(TensorRef {
                kind,
                key,
                offset,
                size,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                Some(v) => Err(format!("{name}: expected a tensor, got {}", brief(&v))),
                None => Err(format!("{name}: expected a tensor, got no argument")),
            }
        }
        _ => Err(format!("calling {module}.{name} is not allowed")),
    }
}

/// Runs the pickle `data` and returns the final value. The persistent ids of `torch.save`
/// (`('storage', type, key, location, numel)`) become [`Value::Storage`]s.
///
/// Refused, with the reason and the byte offset: truncated data, opcodes outside the subset
/// `torch.save` uses, globals outside the allow-list, containers nested deeper than
/// [`MAX_DEPTH`], and more than [`MAX_BYTES`] of values.
pub fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
        built: 0,
    };
    loop {
        let pos = r.pos;
        match step(&mut r, &mut m) {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(fault) => return Err(fault.at(pos)),
        }
    }
}

/// The opcodes this reader runs, named as in Python's `pickletools` (`BININT1` is
/// [`Opcode::BinInt1`], …): protocol 2, plus the protocol 3–5 opcodes `torch.save` may emit.
/// Every other byte is refused with [`PickleError::Opcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Opcode {
    // framing
    /// `PROTO`: the protocol version (at most 5).
    Proto = 0x80,
    /// `FRAME`: a frame length (protocol 4), skipped.
    Frame = 0x95,
    /// `STOP`: the value on top of the stack is the result.
    Stop = b'.',
    // stack: markers and scalars
    /// `MARK`.
    Mark = b'(',
    /// `EMPTY_DICT`.
    EmptyDict = b'}',
    /// `EMPTY_LIST`.
    EmptyList = b']',
    /// `EMPTY_TUPLE`.
    EmptyTuple = b')',
    /// `NONE`.
    None = b'N',
    /// `NEWTRUE`.
    NewTrue = 0x88,
    /// `NEWFALSE`.
    NewFalse = 0x89,
    /// `BININT1`: a 1-byte unsigned int.
    BinInt1 = b'K',
    /// `BININT2`: a 2-byte unsigned int.
    BinInt2 = b'M',
    /// `BININT`: a 4-byte signed int.
    BinInt = b'J',
    /// `LONG1`: an n-byte two's complement int.
    Long1 = 0x8a,
    /// `BINFLOAT`: an 8-byte big-endian float.
    BinFloat = b'G',
    /// `BINUNICODE`: a str with a 4-byte length.
    BinUnicode = b'X',
    /// `SHORT_BINUNICODE`: a str with a 1-byte length.
    ShortBinUnicode = 0x8c,
    /// `BINUNICODE8`: a str with an 8-byte length.
    BinUnicode8 = 0x8d,
    /// `SHORT_BINBYTES`: bytes with a 1-byte length.
    ShortBinBytes = b'C',
    /// `BINBYTES`: bytes with a 4-byte length.
    BinBytes = b'B',
    // memo
    /// `BINPUT`: memoize the top of the stack at a 1-byte index.
    BinPut = b'q',
    /// `LONG_BINPUT`: memoize at a 4-byte index.
    LongBinPut = b'r',
    /// `MEMOIZE`: memoize at the next index.
    Memoize = 0x94,
    /// `BINGET`: push a memo entry (1-byte index).
    BinGet = b'h',
    /// `LONG_BINGET`: push a memo entry (4-byte index).
    LongBinGet = b'j',
    // containers
    /// `TUPLE`: the items above the mark.
    Tuple = b't',
    /// `TUPLE1`.
    Tuple1 = 0x85,
    /// `TUPLE2`.
    Tuple2 = 0x86,
    /// `TUPLE3`.
    Tuple3 = 0x87,
    /// `APPEND`: one item to the list below.
    Append = b'a',
    /// `APPENDS`: the items above the mark to the list below.
    Appends = b'e',
    /// `SETITEM`: one key and value into the dict below.
    SetItem = b's',
    /// `SETITEMS`: the keys and values above the mark into the dict below.
    SetItems = b'u',
    // globals and reduce
    /// `GLOBAL`: module and name as text lines.
    Global = b'c',
    /// `STACK_GLOBAL`: module and name from the stack.
    StackGlobal = 0x93,
    /// `REDUCE`: apply a callable to an argument tuple.
    Reduce = b'R',
    /// `NEWOBJ`: `cls.__new__(cls, *args)`, run like `REDUCE`.
    NewObj = 0x81,
    /// `BUILD`: set an object's state (ignored).
    Build = b'b',
    // persistent ids
    /// `BINPERSID`: a persistent id from the stack (`torch.save`'s storages).
    BinPersId = b'Q',
}

impl TryFrom<u8> for Opcode {
    /// The byte, when it is not an opcode this reader runs.
    type Error = u8;

    fn try_from(byte: u8) -> Result<Self, u8> {
        const ALL: [Opcode; 39] = [
            Opcode::Proto,
            Opcode::Frame,
            Opcode::Stop,
            Opcode::Mark,
            Opcode::EmptyDict,
            Opcode::EmptyList,
            Opcode::EmptyTuple,
            Opcode::None,
            Opcode::NewTrue,
            Opcode::NewFalse,
            Opcode::BinInt1,
            Opcode::BinInt2,
            Opcode::BinInt,
            Opcode::Long1,
            Opcode::BinFloat,
            Opcode::BinUnicode,
            Opcode::ShortBinUnicode,
            Opcode::BinUnicode8,
            Opcode::ShortBinBytes,
            Opcode::BinBytes,
            Opcode::BinPut,
            Opcode::LongBinPut,
            Opcode::Memoize,
            Opcode::BinGet,
            Opcode::LongBinGet,
            Opcode::Tuple,
            Opcode::Tuple1,
            Opcode::Tuple2,
            Opcode::Tuple3,
            Opcode::Append,
            Opcode::Appends,
            Opcode::SetItem,
            Opcode::SetItems,
            Opcode::Global,
            Opcode::StackGlobal,
            Opcode::Reduce,
            Opcode::NewObj,
            Opcode::Build,
            Opcode::BinPersId,
        ];
        ALL.into_iter().find(|&op| op as u8 == byte).ok_or(byte)
    }
}

/// Runs one opcode; the final value after `STOP`.
fn step(r: &mut Reader<'_>, m: &mut Machine) -> Result<Option<Value>, Fault> {
    let op = Opcode::try_from(r.u8()?).map_err(Fault::Opcode)?;
    match op {
        Opcode::Stop => return Ok(Some(m.pop()?.value)),
        Opcode::Proto | Opcode::Frame => framing(r, op)?,
        Opcode::Mark => m.stack.push(Item::Mark),
        Opcode::EmptyDict
        | Opcode::EmptyList
        | Opcode::EmptyTuple
        | Opcode::None
        | Opcode::NewTrue
        | Opcode::NewFalse
        | Opcode::BinInt1
        | Opcode::BinInt2
        | Opcode::BinInt
        | Opcode::Long1
        | Opcode::BinFloat
        | Opcode::BinUnicode
        | Opcode::ShortBinUnicode
        | Opcode::BinUnicode8
        | Opcode::ShortBinBytes
        | Opcode::BinBytes => {
            let v = scalar(r, op)?;
            m.leaf(v)?
        }
        Opcode::BinPut
        | Opcode::LongBinPut
        | Opcode::Memoize
        | Opcode::BinGet
        | Opcode::LongBinGet => memo(r, m, op)?,
        Opcode::Tuple
        | Opcode::Tuple1
        | Opcode::Tuple2
        | Opcode::Tuple3
        | Opcode::Append
        | Opcode::Appends
        | Opcode::SetItem
        | Opcode::SetItems => containers(m, op)?,
        Opcode::Global | Opcode::StackGlobal => {
            let g = global_ref(r, m, op)?;
            m.leaf(g)?
        }
        Opcode::Reduce | Opcode::NewObj => reduce(m)?,
        Opcode::Build => build(m)?,
        Opcode::BinPersId => {
            let pid = m.pop()?;
            m.leaf(persistent_load(pid.value)?)?
        }
    }
    Ok(None)
}

/// `PROTO` (refusing protocols above 5) and `FRAME` (whose length is not needed).
fn framing(r: &mut Reader<'_>, op: Opcode) -> Result<(), Fault> {
    match op {
        Opcode::Proto => {
            let proto = r.u8()?;
            if proto > 5 {
                return Err(Fault::Protocol(proto));
            }
        }
        Opcode::Frame => {
            r.take(8)?;
        }
        other => return Err(Fault::Opcode(other as u8)),
    }
    Ok(())
}

/// The scalar (or empty container) an opcode pushes, with its argument read from `r`.
fn scalar(r: &mut Reader<'_>, op: Opcode) -> Result<Value, Fault> {
    Ok(match op {
        Opcode::EmptyDict => Value::Dict(Vec::new()),
        Opcode::EmptyList => Value::List(Vec::new()),
        Opcode::EmptyTuple => Value::Tuple(Vec::new()),
        Opcode::None => Value::None,
        Opcode::NewTrue => Value::Bool(true),
        Opcode::NewFalse => Value::Bool(false),
        Opcode::BinInt1 => Value::Int(r.u8()? as i64),
        Opcode::BinInt2 => Value::Int(r.u16()? as i64),
        Opcode::BinInt => Value::Int(i32::from_le_bytes(r.array()?) as i64),
        Opcode::Long1 => {
            let n = r.u8()? as usize;
            Value::Int(long1(r.take(n)?)?)
        }
        Opcode::BinFloat => Value::Float(f64::from_be_bytes(r.array()?)),
        Opcode::BinUnicode => {
            let n = r.u32()?;
            Value::Str(r.utf8(n)?)
        }
        Opcode::ShortBinUnicode => {
            let n = r.u8()? as usize;
            Value::Str(r.utf8(n)?)
        }
        Opcode::BinUnicode8 => {
            let n = r.u64()?;
            Value::Str(r.utf8(n)?)
        }
        Opcode::ShortBinBytes => {
            let n = r.u8()? as usize;
            Value::Bytes(r.take(n)?.to_vec())
        }
        Opcode::BinBytes => {
            let n = r.u32()?;
            Value::Bytes(r.take(n)?.to_vec())
        }
        other => return Err(Fault::Opcode(other as u8)),
    })
}

/// `LONG1`'s little-endian two's complement of `b.len()` bytes (at most 8).
fn long1(b: &[u8]) -> Result<i64, Fault> {
    let n = b.len();
    if n > 8 {
        return Err(format!("LONG1 of {n} bytes does not fit in i64").into());
    }
    let mut v: i64 = 0;
    for (i, &byte) in b.iter().enumerate() {
        v |= (byte as i64) << (8 * i);
    }
    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
        v -= 1i64 << (8 * n);
    }
    Ok(v)
}

/// `BINPUT`, `LONG_BINPUT`, `MEMOIZE` (store the top of the stack) and `BINGET`,
/// `LONG_BINGET` (push a stored value).
fn memo(r: &mut Reader<'_>, m: &mut Machine, op: Opcode) -> Result<(), Fault> {
    match op {
        Opcode::BinPut => {
            let i = r.u8()? as usize;
            m.memo_put(i)
        }
        Opcode::LongBinPut => {
            let i = r.u32()?;
            m.memo_put(i)
        }
        Opcode::Memoize => {
            let i = m.memo.len();
            m.memo_put(i)
        }
        Opcode::BinGet => {
            let i = r.u8()? as usize;
            m.memo_get(i)
        }
        Opcode::LongBinGet => {
            let i = r.u32()?;
            m.memo_get(i)
        }
        other => Err(Fault::Opcode(other as u8)),
    }
}

/// Tuples (`TUPLE`, `TUPLE1`–`TUPLE3`) and additions to the list or dict below
/// (`APPEND`, `APPENDS`, `SETITEM`, `SETITEMS`).
fn containers(m: &mut Machine, op: Opcode) -> Result<(), Fault> {
    match op {
        Opcode::Tuple => {
            let items = m.pop_mark()?;
            m.container(items, Value::Tuple)
        }
        Opcode::Tuple1 => tuple_of(m, 1),
        Opcode::Tuple2 => tuple_of(m, 2),
        Opcode::Tuple3 => tuple_of(m, 3),
        Opcode::Append => {
            let item = m.pop()?;
            append(m, vec![item])
        }
        Opcode::Appends => {
            let items = m.pop_mark()?;
            append(m, items)
        }
        Opcode::SetItem => {
            let v = m.pop()?;
            let k = m.pop()?;
            set_items(m, vec![k, v])
        }
        Opcode::SetItems => {
            let items = m.pop_mark()?;
            set_items(m, items)
        }
        other => Err(Fault::Opcode(other as u8)),
    }
}

/// `TUPLE1`–`TUPLE3`: a tuple of the top `n` values.
fn tuple_of(m: &mut Machine, n: usize) -> Result<(), Fault> {
    let mut items = (0..n).map(|_| m.pop()).collect::<Result<Vec<_>, _>>()?;
    items.reverse();
    m.container(items, Value::Tuple)
}

/// `APPEND`, `APPENDS`: `items` added to the list below them.
fn append(m: &mut Machine, items: Vec<Node>) -> Result<(), Fault> {
    m.extend_top(items, |top, values| match top {
        Value::List(l) => {
            l.extend(values);
            Ok(())
        }
        t => Err(format!("APPEND to a non-list {}", brief(t)).into()),
    })
}

/// `SETITEM`, `SETITEMS`: `items` (key, value, key, value, …) added to the dict below them.
fn set_items(m: &mut Machine, items: Vec<Node>) -> Result<(), Fault> {
    if !items.len().is_multiple_of(2) {
        return Err("SETITEMS with an odd number of items".into());
    }
    m.extend_top(items, |top, values| match top {
        Value::Dict(d) => {
            let mut it = values.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                d.push((k, v));
            }
            Ok(())
        }
        t => Err(format!("SETITEM on a non-dict {}", brief(t)).into()),
    })
}

/// The allowed global named by `GLOBAL` (two text lines) or `STACK_GLOBAL` (two strings on the
/// stack).
fn global_ref(r: &mut Reader<'_>, m: &mut Machine, op: Opcode) -> Result<Value, Fault> {
    match op {
        Opcode::Global => {
            let module = r.line()?;
            let name = r.line()?;
            global(module, name)
        }
        Opcode::StackGlobal => {
            let name = m.pop()?;
            let module = m.pop()?;
            match (module.value, name.value) {
                (Value::Str(module), Value::Str(name)) => global(module, name),
                _ => Err("STACK_GLOBAL needs two strings".into()),
            }
        }
        other => Err(Fault::Opcode(other as u8)),
    }
}

/// `REDUCE(callable, args)` and `NEWOBJ(cls, args)`: applies an allowed global ([`apply`]).
fn reduce(m: &mut Machine) -> Result<(), Fault> {
    let args = m.pop()?;
    let f = m.pop()?;
    let (depth, bytes) = (args.depth, args.bytes + own_bytes(&f.value));
    let args = match args.value {
        Value::Tuple(a) => a,
        v => return Err(format!("REDUCE arguments are not a tuple: {}", brief(&v)).into()),
    };
    let value = match f.value {
        Value::Global(module, name) => apply(&module, &name, args)?,
        v => return Err(format!("REDUCE on a non-callable {}", brief(&v)).into()),
    };
    // The result is built from the arguments: no deeper, no larger.
    m.stack.push(Item::V(Node {
        value,
        depth,
        bytes,
    }));
    Ok(())
}

/// `BUILD`: state for the object below. A state dict's OrderedDict carries a `_metadata`
/// attribute (module versions) this reader has no use for.
fn build(m: &mut Machine) -> Result<(), Fault> {
    let _state = m.pop()?;
    m.top()?;
    Ok(())
}

/// Resolves `('storage', <torch.XStorage>, key, location, numel)`.
fn persistent_load(pid: Value) -> Result<Value, String> {
    let items = match pid {
        Value::Tuple(t) => t,
        v => return Err(format!("persistent id is not a tuple: {}", brief(&v))),
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(module, name), key, ..] if tag == "storage" => {
            let kind = (module == "torch")
                .then(|| StorageKind::from_global(name))
                .flatten()
                .ok_or_else(|| format!("unsupported storage type {module}.{name}"))?;
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                v => return Err(format!("storage key is not a string: {}", brief(v))),
            };
            Ok(Value::Storage { kind, key })
        }
        _ => Err(format!(
            "unsupported persistent id {}",
            brief(&Value::Tuple(items))
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values() {
        // pickle.dumps({'a': (1, -2, 300, 70000, 2**40, -129), 'b': [1.5, True, None]}, protocol=2)
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01J\x7f\xff\xff\xfftq\x02X\x01\x00\x00\x00bq\x03]q\x04(G?\xf8\x00\x00\x00\x00\x00\x00\x88Neu.";
        let v = unpickle(data).unwrap();
        let expected = Value::Dict(vec![
            (
                Value::Str("a".into()),
                Value::Tuple(vec![
                    Value::Int(1),
                    Value::Int(-2),
                    Value::Int(300),
                    Value::Int(70000),
                    Value::Int(1 << 40),
                    Value::Int(-129),
                ]),
            ),
            (
                Value::Str("b".into()),
                Value::List(vec![Value::Float(1.5), Value::Bool(true), Value::None]),
            ),
        ]);
        assert_eq!(v, expected);
    }

    #[test]
    fn disallowed_global_is_refused_by_name() {
        let data: &[u8] = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let e = unpickle(data).unwrap_err();
        assert_eq!(
            e,
            PickleError::Forbidden {
                module: "os".into(),
                name: "system".into()
            }
        );
        assert!(e.to_string().contains("os.system"), "{e}");
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(
            unpickle(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab").unwrap_err(),
            PickleError::Truncated { pos: 6 }
        );
        assert_eq!(
            unpickle(b"").unwrap_err(),
            PickleError::Truncated { pos: 0 }
        );
    }

    /// `depth` lists nested in one another: `depth` × EMPTY_LIST, then `depth - 1` × APPEND.
    fn nested_lists(depth: usize) -> Vec<u8> {
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.push(b'.');
        p
    }

    /// `depth` tuples nested in one another: EMPTY_TUPLE, then `depth - 1` × TUPLE1.
    fn nested_tuples(depth: usize) -> Vec<u8> {
        let mut p = b"\x80\x02)".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, depth - 1));
        p.push(b'.');
        p
    }

    #[test]
    fn a_million_nested_lists_or_tuples_are_refused_without_overflowing_the_stack() {
        // 2 MB of pickle, as in the probe that crashed `ipt info` with a stack overflow (the
        // nested value was dropped recursively); run on the test's normal thread.
        let lists = nested_lists(1_000_000);
        assert!(lists.len() > 1_990_000);
        match unpickle(&lists) {
            Err(PickleError::TooDeep { pos }) => assert_eq!(pos, 2 + 1_000_000 + MAX_DEPTH - 1),
            other => panic!("expected TooDeep, got {other:?}"),
        }
        match unpickle(&nested_tuples(1_000_000)) {
            Err(e @ PickleError::TooDeep { .. }) => {
                assert!(e.to_string().contains("levels deep"), "{e}")
            }
            other => panic!("expected TooDeep, got {other:?}"),
        }
        // Dicts nest through SETITEM: {0: {0: {...}}}.
        let mut dicts = b"\x80\x02".to_vec();
        for _ in 0..100_000 {
            dicts.extend_from_slice(b"}K\x00");
        }
        dicts.extend_from_slice(b"}");
        dicts.extend(std::iter::repeat_n(b's', 100_000));
        dicts.push(b'.');
        assert!(matches!(unpickle(&dicts), Err(PickleError::TooDeep { .. })));
    }

    #[test]
    fn nesting_up_to_the_limit_is_read() {
        let mut v = unpickle(&nested_lists(MAX_DEPTH)).unwrap();
        let mut depth = 1;
        while let Value::List(mut items) = v {
            match items.pop() {
                Some(inner) => {
                    depth += 1;
                    v = inner;
                }
                None => break,
            }
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(unpickle(&nested_tuples(MAX_DEPTH)).is_ok());
        assert!(matches!(
            unpickle(&nested_lists(MAX_DEPTH + 1)),
            Err(PickleError::TooDeep { .. })
        ));
        assert!(matches!(
            unpickle(&nested_tuples(MAX_DEPTH + 1)),
            Err(PickleError::TooDeep { .. })
        ));
    }

    #[test]
    fn memo_copies_that_double_each_time_are_refused() {
        // ["x" * 1000], then 40 × (t = (t, t)) through the memo: 2^40 copies if unchecked.
        let mut p = b"\x80\x02]X\xe8\x03\x00\x00".to_vec();
        p.extend(std::iter::repeat_n(b'x', 1000));
        p.extend_from_slice(b"aq\x00");
        for _ in 0..40 {
            p.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        p.push(b'.');
        match unpickle(&p) {
            Err(e @ PickleError::TooLarge { .. }) => {
                assert!(e.to_string().contains("MiB of values"), "{e}")
            }
            other => panic!("expected TooLarge, got {:?}", other.map(|v| brief(&v))),
        }
    }

    #[test]
    fn messages_quote_values_briefly() {
        // APPEND to a tuple of 100000 ints: the message shows the start of the tuple only.
        let mut p = b"\x80\x02(".to_vec();
        p.extend(std::iter::repeat_n(*b"K\x07", 100_000).flatten());
        p.extend_from_slice(b"tNa.");
        let e = unpickle(&p).unwrap_err().to_string();
        assert!(e.contains("APPEND to a non-list Tuple([Int(7)"), "{e}");
        assert!(e.len() < 400, "{} characters", e.len());
    }

    #[test]
    fn opcodes_are_the_bytes_of_pickletools() {
        // the bytes the reader ran before opcodes had names, each named once
        let bytes: &[u8] =
            b"\x80\x95.(}])N\x88\x89KMJ\x8aGX\x8c\x8dCBqr\x94hjt\x85\x86\x87aesuc\x93R\x81bQ";
        for byte in 0..=255u8 {
            match Opcode::try_from(byte) {
                Ok(op) => {
                    assert_eq!(op as u8, byte);
                    assert!(bytes.contains(&byte), "0x{byte:02x} is new");
                }
                Err(b) => {
                    assert_eq!(b, byte);
                    assert!(!bytes.contains(&byte), "0x{byte:02x} is refused");
                }
            }
        }
        assert_eq!(
            unpickle(b"\x80\x02\x8f.").unwrap_err(),
            PickleError::Opcode { op: 0x8f, pos: 2 }
        );
    }
}
