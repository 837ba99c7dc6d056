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
    fn from_global(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Float,
            "DoubleStorage" => Self::Double,
            "HalfStorage" => Self::Half,
            "BFloat16Storage" => Self::BFloat16,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            "ShortStorage" => Self::Short,
            "CharStorage" => Self::Char,
            "ByteStorage" => Self::Byte,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
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

enum Item {
    Mark,
    V(Value),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Result<usize, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|e| e.to_string())
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("pickle: unterminated text line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| format!("pickle: bad UTF-8: {e}"))
    }
}

struct Machine {
    stack: Vec<Item>,
    memo: HashMap<usize, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Item::V(v)) => Ok(v),
            Some(Item::Mark) => Err("pickle: unexpected MARK on the stack".into()),
            None => Err("pickle: stack underflow".into()),
        }
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Item::V(v)) => Ok(v),
            _ => Err("pickle: expected a value on top of the stack".into()),
        }
    }
    fn push(&mut self, v: Value) {
        self.stack.push(Item::V(v));
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(Item::Mark) => break,
                Some(Item::V(v)) => items.push(v),
                None => return Err("pickle: MARK not found".into()),
            }
        }
        items.reverse();
        Ok(items)
    }
    fn memo_put(&mut self, idx: usize) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: usize) -> Result<(), String> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| format!("pickle: memo entry {idx} missing"))?;
        self.push(v);
        Ok(())
    }
}

fn as_usize(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(format!("{what}: expected a non-negative int, got {v:?}")),
    }
}

fn as_usizes(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(xs) | Value::List(xs) => xs.iter().map(|x| as_usize(x, what)).collect(),
        _ => Err(format!("{what}: expected a tuple of ints, got {v:?}")),
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
                v => return Err(format!("_rebuild_tensor_v2: expected a storage, got {v:?}")),
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
                v => Err(format!("{name}: expected a tensor, got {v:?}")),
            }
        }
        _ => Err(format!("pickle: calling {module}.{name} is not allowed")),
    }
}

/// Runs the pickle `data` and returns the final value. `persistent_load` resolves the
/// persistent ids of `torch.save` (`('storage', type, key, location, numel)`).
pub fn unpickle(data: &[u8]) -> Result<Value, String> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is not supported"));
                }
            }
            0x95 => {
                r.take(8)?; // FRAME: length only.
            }
            b'.' => return m.pop(), // STOP
            b'(' => m.stack.push(Item::Mark),
            b'}' => m.push(Value::Dict(Vec::new())),
            b']' => m.push(Value::List(Vec::new())),
            b')' => m.push(Value::Tuple(Vec::new())),
            b'N' => m.push(Value::None),
            0x88 => m.push(Value::Bool(true)),
            0x89 => m.push(Value::Bool(false)),
            b'K' => {
                let v = r.u8()?;
                m.push(Value::Int(v as i64))
            }
            b'M' => {
                let v = r.u16()?;
                m.push(Value::Int(v as i64))
            }
            b'J' => {
                let b = r.take(4)?;
                m.push(Value::Int(
                    i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                ))
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    return Err(format!("pickle: LONG1 of {n} bytes does not fit in i64"));
                }
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.push(Value::Int(v))
            }
            b'G' => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                m.push(Value::Float(f64::from_be_bytes(a)))
            }
            b'X' => {
                let n = r.u32()?;
                let s = r.utf8(n)?;
                m.push(Value::Str(s))
            }
            0x8c => {
                let n = r.u8()? as usize;
                let s = r.utf8(n)?;
                m.push(Value::Str(s))
            }
            0x8d => {
                let n = r.u64()?;
                let s = r.utf8(n)?;
                m.push(Value::Str(s))
            }
            b'C' => {
                let n = r.u8()? as usize;
                m.push(Value::Bytes(r.take(n)?.to_vec()))
            }
            b'B' => {
                let n = r.u32()?;
                m.push(Value::Bytes(r.take(n)?.to_vec()))
            }
            b'q' => {
                let i = r.u8()? as usize;
                m.memo_put(i)?
            }
            b'r' => {
                let i = r.u32()?;
                m.memo_put(i)?
            }
            0x94 => {
                let i = m.memo.len();
                m.memo_put(i)?
            }
            b'h' => {
                let i = r.u8()? as usize;
                m.memo_get(i)?
            }
            b'j' => {
                let i = r.u32()?;
                m.memo_get(i)?
            }
            b't' => {
                let items = m.pop_mark()?;
                m.push(Value::Tuple(items))
            }
            0x85 => {
                let a = m.pop()?;
                m.push(Value::Tuple(vec![a]))
            }
            0x86 => {
                let b = m.pop()?;
                let a = m.pop()?;
                m.push(Value::Tuple(vec![a, b]))
            }
            0x87 => {
                let c = m.pop()?;
                let b = m.pop()?;
                let a = m.pop()?;
                m.push(Value::Tuple(vec![a, b, c]))
            }
            b'a' => {
                let v = m.pop()?;
                match m.top()? {
                    Value::List(l) => l.push(v),
                    t => return Err(format!("pickle: APPEND to a non-list {t:?}")),
                }
            }
            b'e' => {
                let items = m.pop_mark()?;
                match m.top()? {
                    Value::List(l) => l.extend(items),
                    t => return Err(format!("pickle: APPENDS to a non-list {t:?}")),
                }
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                match m.top()? {
                    Value::Dict(d) => d.push((k, v)),
                    t => return Err(format!("pickle: SETITEM on a non-dict {t:?}")),
                }
            }
            b'u' => {
                let items = m.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err("pickle: SETITEMS with an odd number of items".into());
                }
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                match m.top()? {
                    Value::Dict(d) => d.extend(pairs),
                    t => return Err(format!("pickle: SETITEMS on a non-dict {t:?}")),
                }
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                if !allowed_global(&module, &name) {
                    return Err(format!(
                        "pickle refers to {module}.{name}, which this safe reader does not allow \
                         (only state dicts of tensors are supported)"
                    ));
                }
                m.push(Value::Global(module, name))
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        if !allowed_global(&module, &name) {
                            return Err(format!(
                                "pickle refers to {module}.{name}, which this safe reader does \
                                 not allow (only state dicts of tensors are supported)"
                            ));
                        }
                        m.push(Value::Global(module, name))
                    }
                    _ => return Err("pickle: STACK_GLOBAL needs two strings".into()),
                }
            }
            b'R' | 0x81 => {
                // REDUCE(callable, args) / NEWOBJ(cls, args)
                let args = m.pop()?;
                let f = m.pop()?;
                let args = match args {
                    Value::Tuple(a) => a,
                    v => return Err(format!("pickle: REDUCE arguments are not a tuple: {v:?}")),
                };
                match f {
                    Value::Global(module, name) => m.push(apply(&module, &name, args)?),
                    v => return Err(format!("pickle: REDUCE on a non-callable {v:?}")),
                }
            }
            b'b' => {
                // BUILD: state for the object below. A state dict's OrderedDict carries a
                // `_metadata` attribute (module versions) this reader has no use for.
                let _state = m.pop()?;
                m.top()?;
            }
            b'Q' => {
                let pid = m.pop()?;
                m.push(persistent_load(pid)?)
            }
            _ => {
                return Err(format!(
                    "pickle opcode 0x{op:02x} at byte {} is not supported",
                    r.pos - 1
                ))
            }
        }
    }
}

/// Resolves `('storage', <torch.XStorage>, key, location, numel)`.
fn persistent_load(pid: Value) -> Result<Value, String> {
    let items = match pid {
        Value::Tuple(t) => t,
        v => return Err(format!("pickle: persistent id is not a tuple: {v:?}")),
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
                v => return Err(format!("pickle: storage key is not a string: {v:?}")),
            };
            Ok(Value::Storage { kind, key })
        }
        _ => Err(format!("pickle: unsupported persistent id {items:?}")),
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
        assert!(e.contains("os.system"), "{e}");
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(unpickle(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab").is_err());
        assert!(unpickle(b"").is_err());
    }
}
