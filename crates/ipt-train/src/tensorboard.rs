//! TensorBoard event files: what `tensorboard --logdir runs` (or W&B's TensorBoard sync) reads.
//!
//! A file `events.out.tfevents.<seconds>.<host>.ipt` in the run directory holds TFRecord records
//! (`u64` length, masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes; the
//! format of TensorFlow's `record_writer.cc`), each an `Event` protocol buffer: first
//! `file_version = "brain.Event:2"`, then one `Summary` per step with scalar values
//! (`simple_value`) or PNG images. The messages are declared with `prost` (only the fields
//! written; field numbers of TensorFlow's `event.proto` and `summary.proto`), and the checksum is
//! the `crc32c` crate's.
//!
//! Every process start opens a new file (TensorBoard reads all files of a folder); a resumed
//! run's steps after its checkpoint are written again, which TensorBoard resolves by the newer
//! file. Records are flushed as written, so a killed run loses at most the record being written,
//! and TensorBoard ignores a truncated last record.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipt_degrade::Image;
use prost::Message;

/// `tensorflow.Event` (the fields written).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The training step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The first event of a file: `brain.Event:2`.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// The values of this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorflow.Summary.Value` (a scalar or an image).
#[derive(Clone, PartialEq, Message)]
pub struct Value {
    /// The series' name, e.g. `val/psnr_y/sr2`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// An image.
    #[prost(message, optional, tag = "4")]
    pub image: Option<SummaryImage>,
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryImage {
    /// Rows.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Columns.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 3 RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG file's bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// Errors of writing events.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The file cannot be created or written.
    #[error("{path}: cannot write TensorBoard events: {source}")]
    Io {
        /// The events file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An image cannot be encoded.
    #[error("{path}: cannot encode the image `{tag}`: {message}")]
    Image {
        /// The events file.
        path: PathBuf,
        /// The image's tag.
        tag: String,
        /// What failed.
        message: String,
    },
}

/// TFRecord's masked CRC-32C.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord record around `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The data of every record of `bytes` whose checksums hold, stopping at the first truncated or
/// corrupt one (as TensorBoard's reader does).
pub fn read_records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 12 {
        let (len, crc) = (&rest[..8], &rest[8..12]);
        if masked_crc(len).to_le_bytes() != crc {
            break;
        }
        let n = u64::from_le_bytes(len.try_into().unwrap_or([0; 8])) as usize;
        let Some(end) = n.checked_add(16).filter(|&e| e <= rest.len()) else {
            break;
        };
        let data = &rest[12..12 + n];
        if masked_crc(data).to_le_bytes() != rest[12 + n..end] {
            break;
        }
        out.push(data);
        rest = &rest[end..];
    }
    out
}

/// An open events file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// A new events file in `dir`, its version record written.
    pub fn create(dir: &Path) -> Result<Self, EventsError> {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or_else(|| "localhost".into());
        let t = now();
        // Two processes starting in the same second get distinct names by their pid.
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.ipt",
            t as u64,
            std::process::id()
        ));
        let file = File::create(&path).map_err(|source| EventsError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = EventWriter { path, file };
        w.write(&Event {
            wall_time: t,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(w)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, event: &Event) -> Result<(), EventsError> {
        let io = |source| EventsError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all(&record(&event.encode_to_vec()))
            .map_err(io)?;
        self.file.flush().map_err(io)
    }

    fn summary(&mut self, step: u64, value: Vec<Value>) -> Result<(), EventsError> {
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value }),
        })
    }

    /// Scalars `(tag, value)` of step `step`, in one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<(), EventsError> {
        let value = values
            .iter()
            .map(|(tag, v)| Value {
                tag: tag.clone(),
                simple_value: Some(*v as f32),
                image: None,
            })
            .collect();
        self.summary(step, value)
    }

    /// Images `(tag, image)` of step `step` (values 0–255, quantised as the PNGs the project
    /// writes), in one event.
    pub fn images(&mut self, step: u64, images: &[(String, &Image)]) -> Result<(), EventsError> {
        let mut value = Vec::with_capacity(images.len());
        for (tag, img) in images {
            let (c, h, w) = img.dim();
            let png = ipt_degrade::io::encode_png(Path::new(tag), img).map_err(|e| {
                EventsError::Image {
                    path: self.path.clone(),
                    tag: tag.clone(),
                    message: e.to_string(),
                }
            })?;
            value.push(Value {
                tag: tag.clone(),
                simple_value: None,
                image: Some(SummaryImage {
                    height: h as i32,
                    width: w as i32,
                    colorspace: c as i32,
                    encoded_image_string: png,
                }),
            });
        }
        self.summary(step, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC-32C("123456789") = 0xE3069283 (the check value of the Castagnoli polynomial).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // TensorFlow's mask: ((c >> 15) | (c << 17)) + 0xa282ead8, worked out by hand.
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn records_round_trip_and_truncation_stops_the_reader() {
        let mut bytes = record(b"first");
        bytes.extend(record(b""));
        bytes.extend(record(b"third"));
        assert_eq!(read_records(&bytes), vec![&b"first"[..], b"", b"third"]);
        let cut = &bytes[..bytes.len() - 3];
        assert_eq!(read_records(cut).len(), 2);
        let mut flipped = bytes.clone();
        flipped[14] ^= 1;
        assert!(read_records(&flipped).is_empty());
    }

    #[test]
    fn events_decode_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(7, &[("train/loss".into(), 1.5)]).unwrap();
        let img = Image::from_elem((3, 4, 5), 128.0);
        w.images(7, &[("val/sr2/x".into(), &img)]).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let events: Vec<Event> = read_records(&bytes)
            .into_iter()
            .map(|r| Event::decode(r).unwrap())
            .collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        let v = &events[1].summary.as_ref().unwrap().value[0];
        assert_eq!(
            (events[1].step, v.tag.as_str(), v.simple_value),
            (7, "train/loss", Some(1.5))
        );
        let i = events[2].summary.as_ref().unwrap().value[0]
            .image
            .clone()
            .unwrap();
        assert_eq!((i.height, i.width, i.colorspace), (4, 5, 3));
        assert_eq!(&i.encoded_image_string[1..4], b"PNG");
    }
}
