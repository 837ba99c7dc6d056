//! PNG metadata chunks that inflate (`iCCP`, `zTXt`, compressed `iTXt`), checked before the PNG
//! decoder sees them: each may inflate to at most [`MAX_INFLATED_CHUNK`] bytes. The decoder
//! inflates them whole and its budget is sized for pixels, so a 2 MB file whose ICC profile
//! inflates to 2 GiB used to take 2 GiB of memory (W3C PNG Specification, 3rd edition, sections
//! 11.3.3.3 iCCP, 11.3.4.4 zTXt and 11.3.4.5 iTXt: a keyword, a NUL, a compression method, then
//! zlib data).

use std::io::{BufRead, Read, Seek, SeekFrom};

/// Most bytes one metadata chunk may inflate to: 16 MiB, far above real ICC profiles (a few
/// hundred KB at most) and text chunks.
pub const MAX_INFLATED_CHUNK: u64 = 16 << 20;

/// What is wrong with a chunk, in words.
pub type ChunkProblem = String;

/// Walks the chunks of a PNG (the reader at its signature) and inflates each compressed
/// metadata chunk up to the limit. Returns `Err(problem)` for a chunk that inflates beyond it;
/// structural damage is left to the decoder, which reports it. The reader is left anywhere.
pub fn check<R: BufRead + Seek>(
    reader: &mut R,
    len: u64,
) -> std::io::Result<Result<(), ChunkProblem>> {
    reader.seek(SeekFrom::Start(8))?;
    let mut at = 8u64;
    while at + 12 <= len {
        let mut head = [0u8; 8];
        if reader.read_exact(&mut head).is_err() {
            break;
        }
        let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = [head[4], head[5], head[6], head[7]];
        if at + 12 + size > len {
            break; // truncated: the decoder says so
        }
        let name = String::from_utf8_lossy(&kind).into_owned();
        if matches!(&kind, b"iCCP" | b"zTXt" | b"iTXt") {
            let mut data = vec![0u8; size as usize];
            reader.read_exact(&mut data)?;
            if let Some(stream) = compressed_part(&kind, &data) {
                let inflated = inflated_size(stream, MAX_INFLATED_CHUNK + 1);
                if inflated > MAX_INFLATED_CHUNK {
                    return Ok(Err(format!(
                        "its {name} metadata chunk ({size} bytes) inflates to more than {} MiB \
                         (the limit for one metadata chunk); the file is refused",
                        MAX_INFLATED_CHUNK >> 20
                    )));
                }
            }
            reader.seek(SeekFrom::Current(4))?; // CRC
        } else if &kind == b"IEND" {
            break;
        } else {
            reader.seek(SeekFrom::Current(size as i64 + 4))?;
        }
        at += 12 + size;
    }
    Ok(Ok(()))
}

/// The zlib stream inside a metadata chunk's data, if it is compressed.
fn compressed_part<'a>(kind: &[u8; 4], data: &'a [u8]) -> Option<&'a [u8]> {
    let keyword_end = data.iter().position(|&b| b == 0)?;
    let rest = &data[keyword_end + 1..];
    match kind {
        // compression method, then the stream
        b"iCCP" | b"zTXt" => rest.get(1..),
        // compression flag, method, language tag NUL, translated keyword NUL, then the text
        b"iTXt" => {
            if rest.first() != Some(&1) {
                return None;
            }
            let rest = rest.get(2..)?;
            let lang_end = rest.iter().position(|&b| b == 0)?;
            let rest = &rest[lang_end + 1..];
            let key_end = rest.iter().position(|&b| b == 0)?;
            Some(&rest[key_end + 1..])
        }
        _ => None,
    }
}

/// Bytes the zlib stream inflates to, counted up to `cap` (a damaged stream counts what came
/// out before the damage).
fn inflated_size(stream: &[u8], cap: u64) -> u64 {
    let decoder = flate2::read::ZlibDecoder::new(stream);
    std::io::copy(&mut decoder.take(cap), &mut std::io::sink()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0, 0, 0, 0]); // CRC (not checked here)
        out
    }

    fn zlib(n: usize) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(zeros.len());
            e.write_all(&zeros[..k]).unwrap();
            left -= k;
        }
        e.finish().unwrap()
    }

    fn png_with(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for c in chunks {
            out.extend(c);
        }
        out.extend(chunk(b"IEND", b""));
        out
    }

    #[test]
    fn chunks_that_inflate_beyond_the_limit_are_found() {
        let ihdr = chunk(b"IHDR", &[0; 13]);
        let big = zlib((MAX_INFLATED_CHUNK + 1) as usize);
        let ok = zlib(1 << 20);
        let iccp = |z: &[u8]| chunk(b"iCCP", &[b"icc\0\0".as_slice(), z].concat());
        let ztxt = |z: &[u8]| chunk(b"zTXt", &[b"Comment\0\0".as_slice(), z].concat());
        let itxt = |z: &[u8]| chunk(b"iTXt", &[b"XML\0\x01\0en\0\0".as_slice(), z].concat());
        for (bad, name) in [
            (iccp(&big), "iCCP"),
            (ztxt(&big), "zTXt"),
            (itxt(&big), "iTXt"),
        ] {
            let file = png_with(&[ihdr.clone(), bad]);
            let len = file.len() as u64;
            let got = check(&mut Cursor::new(file), len).unwrap();
            assert!(got.as_ref().is_err_and(|e| e.contains(name)), "{got:?}");
        }
        let file = png_with(&[ihdr.clone(), iccp(&ok), ztxt(&ok), itxt(&ok)]);
        let len = file.len() as u64;
        assert_eq!(check(&mut Cursor::new(file), len).unwrap(), Ok(()));
    }
}
