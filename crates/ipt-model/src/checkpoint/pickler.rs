//! Writing the pickle of a `torch.save` state dict: an `OrderedDict` of tensors, each rebuilt by
//! `torch._utils._rebuild_tensor_v2` from a persistent storage reference, exactly as Python's
//! pickler (protocol 2, the `torch.save` default) writes it, memo indices included. A state dict
//! saved by PyTorch also carries a `_metadata` attribute (module versions), which loading does not
//! need and which is not written here; up to it the bytes are PyTorch's (tested against a file
//! written by `torch.save`).

use std::collections::HashMap;

use super::pickle::{Opcode, StorageKind};

/// One tensor of the state dict: its name, element kind, shape and the storage key (the file
/// `data/<key>` of the archive) holding its elements contiguously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The state-dict key.
    pub name: String,
    /// Element type.
    pub kind: StorageKind,
    /// Shape.
    pub size: Vec<usize>,
    /// Storage key.
    pub storage: String,
}

/// Python's pickler, reduced to what a state dict needs: opcodes, the memo, and which objects
/// Python would memoize once and fetch again (globals, and the shared strings `'storage'` and
/// `'cpu'`).
struct Pickler {
    out: Vec<u8>,
    memo_len: u32,
    shared: HashMap<String, u32>,
}

impl Pickler {
    fn op(&mut self, op: Opcode) {
        self.out.push(op as u8);
    }

    /// Memoizes the object on top of the stack (`BINPUT`, `LONG_BINPUT` from index 256).
    fn memoize(&mut self) -> u32 {
        let idx = self.memo_len;
        if idx < 256 {
            self.op(Opcode::BinPut);
            self.out.push(idx as u8);
        } else {
            self.op(Opcode::LongBinPut);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
        self.memo_len += 1;
        idx
    }

    fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.op(Opcode::BinGet);
            self.out.push(idx as u8);
        } else {
            self.op(Opcode::LongBinGet);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }

    /// An object Python pickles once and fetches from the memo afterwards.
    fn shared(&mut self, key: &str, write: impl FnOnce(&mut Self)) {
        if let Some(&idx) = self.shared.get(key) {
            self.get(idx);
            return;
        }
        write(self);
        let idx = self.memoize();
        self.shared.insert(key.to_string(), idx);
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = format!("global {module}.{name}");
        self.shared(&key, |p| {
            p.op(Opcode::Global);
            p.out
                .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        });
    }

    fn raw_str(&mut self, s: &str) {
        self.op(Opcode::BinUnicode);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A string object of its own (memoized, never fetched again).
    fn str(&mut self, s: &str) {
        self.raw_str(s);
        self.memoize();
    }

    /// A string object that recurs (`'storage'`, `'cpu'`).
    fn shared_str(&mut self, s: &str) {
        self.shared(&format!("str {s}"), |p| p.raw_str(s));
    }

    /// An int as `save_long` writes it at protocol 2.
    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.op(Opcode::BinInt1);
            self.out.push(v as u8);
        } else if (0..=0xffff).contains(&v) {
            self.op(Opcode::BinInt2);
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.op(Opcode::BinInt);
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1: the shortest two's complement little-endian encoding
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (last, prev) = (bytes[n - 1], bytes[n - 2]);
                if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.op(Opcode::Long1);
            self.out.push(n as u8);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }

    /// A tuple as `save_tuple` writes it: `EMPTY_TUPLE`; `TUPLE1`–`TUPLE3` after the items; else
    /// `MARK`, the items, `TUPLE`; then memoized (except the empty tuple).
    fn tuple(&mut self, len: usize, items: impl FnOnce(&mut Self)) {
        if len == 0 {
            self.op(Opcode::EmptyTuple);
            return;
        }
        if len > 3 {
            self.op(Opcode::Mark);
        }
        items(self);
        self.op(match len {
            1 => Opcode::Tuple1,
            2 => Opcode::Tuple2,
            3 => Opcode::Tuple3,
            _ => Opcode::Tuple,
        });
        self.memoize();
    }

    fn ints(&mut self, values: &[usize]) {
        self.tuple(values.len(), |p| {
            for &v in values {
                p.int(v as i64);
            }
        });
    }

    /// `collections.OrderedDict()`: `save_reduce(OrderedDict, ())`.
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(Opcode::EmptyTuple);
        self.op(Opcode::Reduce);
        self.memoize();
    }

    /// A contiguous CPU tensor: `_rebuild_tensor_v2(storage, 0, size, stride, False,
    /// OrderedDict())`, the storage as the persistent id `('storage', torch.XStorage, key,
    /// 'cpu', numel)`.
    fn tensor(&mut self, t: &TensorEntry) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        let numel: usize = t.size.iter().product();
        let mut stride = vec![1usize; t.size.len()];
        for i in (0..t.size.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * t.size[i + 1];
        }
        self.tuple(6, |p| {
            p.tuple(5, |p| {
                p.shared_str("storage");
                p.global("torch", t.kind.global_name());
                p.str(&t.storage);
                p.shared_str("cpu");
                p.int(numel as i64);
            });
            p.op(Opcode::BinPersId);
            p.int(0);
            p.ints(&t.size);
            p.ints(&stride);
            p.op(Opcode::NewFalse);
            p.empty_ordered_dict();
        });
        self.op(Opcode::Reduce);
        self.memoize();
    }
}

/// Python's `_BATCHSIZE`: `SETITEMS` takes at most this many pairs.
const BATCH: usize = 1000;

/// The `data.pkl` of `torch.save(state_dict)` for these tensors, in order.
pub fn state_dict_pickle(tensors: &[TensorEntry]) -> Vec<u8> {
    let mut p = Pickler {
        out: Vec::new(),
        memo_len: 0,
        shared: HashMap::new(),
    };
    p.op(Opcode::Proto);
    p.out.push(2);
    p.empty_ordered_dict();
    for batch in tensors.chunks(BATCH) {
        if batch.len() > 1 {
            p.op(Opcode::Mark);
        }
        for t in batch {
            p.str(&t.name);
            p.tensor(t);
        }
        p.op(if batch.len() > 1 {
            Opcode::SetItems
        } else {
            Opcode::SetItem
        });
    }
    p.op(Opcode::Stop);
    p.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::pickle::{unpickle, Value};

    #[test]
    fn ints_use_the_shortest_opcode() {
        let enc = |v: i64| {
            let mut p = Pickler {
                out: Vec::new(),
                memo_len: 0,
                shared: HashMap::new(),
            };
            p.int(v);
            p.out
        };
        assert_eq!(enc(7), vec![b'K', 7]);
        assert_eq!(enc(300), vec![b'M', 44, 1]);
        assert_eq!(enc(70_000), vec![b'J', 0x70, 0x11, 1, 0]);
        assert_eq!(enc(1 << 40), vec![0x8a, 6, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn the_pickle_reads_back_as_the_same_tensors() {
        let entries = vec![
            TensorEntry {
                name: "a.weight".into(),
                kind: StorageKind::Float,
                size: vec![2, 3, 1, 1],
                storage: "0".into(),
            },
            TensorEntry {
                name: "ids".into(),
                kind: StorageKind::Long,
                size: vec![],
                storage: "1".into(),
            },
        ];
        let Value::Dict(items) = unpickle(&state_dict_pickle(&entries)).unwrap() else {
            panic!("not a dict");
        };
        assert_eq!(items.len(), 2);
        let Value::Tensor(t) = &items[0].1 else {
            panic!("not a tensor")
        };
        assert_eq!(
            (t.kind, t.size.clone(), t.stride.clone()),
            (StorageKind::Float, vec![2, 3, 1, 1], vec![3, 1, 1, 1])
        );
    }
}
