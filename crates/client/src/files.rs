//! The public shapes of files and transfers: what a message's attachment is
//! and how far a transfer has come. The engine lives in `transfer.rs`.

use std::path::PathBuf;

use hutong_protocol::v1;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferDirection {
    Upload,
    Download,
}

impl TransferDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferDirection::Upload => "upload",
            TransferDirection::Download => "download",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upload" => Some(TransferDirection::Upload),
            "download" => Some(TransferDirection::Download),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    Queued,
    Running,
    Paused,
    Done,
    Failed,
    Cancelled,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Queued => "queued",
            TransferState::Running => "running",
            TransferState::Paused => "paused",
            TransferState::Done => "done",
            TransferState::Failed => "failed",
            TransferState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TransferState::Queued,
            "running" => TransferState::Running,
            "paused" => TransferState::Paused,
            "done" => TransferState::Done,
            "failed" => TransferState::Failed,
            "cancelled" => TransferState::Cancelled,
            _ => return None,
        })
    }

    /// Done, failed or cancelled: nothing more happens on its own.
    pub fn is_final(self) -> bool {
        matches!(self, TransferState::Done | TransferState::Failed | TransferState::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentKind {
    File,
    Image,
    Folder,
}

impl AttachmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::File => "file",
            AttachmentKind::Image => "image",
            AttachmentKind::Folder => "folder",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(AttachmentKind::File),
            "image" => Some(AttachmentKind::Image),
            "folder" => Some(AttachmentKind::Folder),
            _ => None,
        }
    }

    pub fn from_wire(kind: i32) -> Self {
        match v1::AttachmentKind::try_from(kind) {
            Ok(v1::AttachmentKind::AttachmentImage) => AttachmentKind::Image,
            Ok(v1::AttachmentKind::AttachmentFolder) => AttachmentKind::Folder,
            _ => AttachmentKind::File,
        }
    }

    pub fn to_wire(self) -> i32 {
        match self {
            AttachmentKind::File => v1::AttachmentKind::AttachmentFile as i32,
            AttachmentKind::Image => v1::AttachmentKind::AttachmentImage as i32,
            AttachmentKind::Folder => v1::AttachmentKind::AttachmentFolder as i32,
        }
    }
}

/// A file, an image or a folder carried by a message of kind "file".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// Hex; for a folder, the file holding its `FolderManifest`.
    pub file_id: String,
    pub name: String,
    /// Bytes; for a folder, all its files together.
    pub size: u64,
    pub mime: String,
    pub file_count: u32,
    pub width: u32,
    pub height: u32,
    /// A small JPEG for images (empty otherwise).
    #[serde(skip)]
    pub thumbnail: Vec<u8>,
}

impl Attachment {
    pub fn from_wire(a: &v1::Attachment) -> Self {
        Attachment {
            kind: AttachmentKind::from_wire(a.kind),
            file_id: hex::encode(&a.file_id),
            name: a.name.clone(),
            size: a.size,
            mime: a.mime.clone(),
            file_count: a.file_count,
            width: a.width,
            height: a.height,
            thumbnail: a.thumbnail.clone(),
        }
    }

    pub fn to_wire(&self) -> v1::Attachment {
        v1::Attachment {
            kind: self.kind.to_wire(),
            file_id: hex::decode(&self.file_id).unwrap_or_default(),
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
            file_count: self.file_count,
            width: self.width,
            height: self.height,
            thumbnail: self.thumbnail.clone(),
        }
    }
}

/// One upload or download, as stored in the cache and reported by
/// `Event::Transfer`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    /// UUIDv7.
    pub id: String,
    pub direction: TransferDirection,
    pub state: TransferState,
    pub conversation_id: u64,
    /// Download: the message; upload: 0 until the message is acknowledged.
    pub seq: u64,
    /// Upload: the message's client id.
    pub client_msg_id: String,
    pub kind: AttachmentKind,
    pub name: String,
    /// Upload: the source; download: the final destination path.
    pub local_path: PathBuf,
    pub total_bytes: u64,
    /// Bytes the server has (upload) / verified on disk (download).
    pub done_bytes: u64,
    /// Chunk payload bytes this process put on / took off the wire for it.
    pub wire_bytes: u64,
    /// A sentence.
    pub error: Option<String>,
    /// `ClientError::code()` style, e.g. "QUOTA_EXCEEDED", "UNSAFE_PATH".
    pub error_code: Option<String>,
    pub created_at_ms: i64,
}

/// "12.3 MB" style sizes for people.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip_and_sizes_read_well() {
        let wire = v1::Attachment {
            kind: v1::AttachmentKind::AttachmentImage as i32,
            file_id: vec![0xab; 32],
            name: "图.png".into(),
            size: 12,
            mime: "image/png".into(),
            file_count: 0,
            width: 3,
            height: 4,
            thumbnail: vec![1, 2, 3],
        };
        let a = Attachment::from_wire(&wire);
        assert_eq!(a.kind, AttachmentKind::Image);
        assert_eq!(a.file_id, "ab".repeat(32));
        assert_eq!(a.to_wire(), wire);
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(serde_json::to_string(&TransferState::Cancelled).unwrap(), "\"cancelled\"");
    }
}
