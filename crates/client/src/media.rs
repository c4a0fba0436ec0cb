//! What kind of file this is: images (recognised by their content, not their
//! name) get their dimensions and a small JPEG thumbnail; everything gets a
//! MIME type.

use std::io::Cursor;
use std::path::Path;

use hutong_protocol::files::MAX_THUMBNAIL_LEN;
use image::{ImageFormat, ImageReader};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 256;

/// An image file's format and size, read from its header only; `None` for
/// anything that is not a PNG, JPEG, GIF, WebP or BMP.
pub fn sniff_image(path: &Path) -> Option<(ImageFormat, u32, u32)> {
    let reader = ImageReader::open(path).ok()?.with_guessed_format().ok()?;
    let format = reader.format()?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP | ImageFormat::Bmp
    ) {
        return None;
    }
    let (w, h) = reader.into_dimensions().ok()?;
    Some((format, w, h))
}

/// A JPEG of at most [`THUMBNAIL_SIDE`] pixels on the long side and at most
/// `MAX_THUMBNAIL_LEN` bytes; `None` when the image cannot be decoded.
pub fn thumbnail(path: &Path) -> Option<Vec<u8>> {
    let mut reader = ImageReader::open(path).ok()?.with_guessed_format().ok()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(1024 * 1024 * 1024);
    reader.limits(limits);
    let image = reader.decode().ok()?;
    let mut side = THUMBNAIL_SIDE;
    loop {
        let small = if image.width() > side || image.height() > side {
            image.thumbnail(side, side)
        } else {
            image.clone()
        };
        let rgb = small.into_rgb8();
        for quality in [80u8, 60, 40, 25] {
            let mut out = Cursor::new(Vec::new());
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
            rgb.write_with_encoder(encoder).ok()?;
            let bytes = out.into_inner();
            if bytes.len() <= MAX_THUMBNAIL_LEN {
                return Some(bytes);
            }
        }
        if side <= 32 {
            return None;
        }
        side /= 2;
    }
}

pub fn image_mime(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        ImageFormat::Bmp => "image/bmp",
        _ => "application/octet-stream",
    }
}

/// A MIME type from a file name's extension, for files that are not images.
pub fn mime_for_name(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" | "csv" => "text/plain",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "7z" => "application/x-7z-compressed",
        "rar" => "application/vnd.rar",
        "tar" => "application/x-tar",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32) {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        img.save_with_format(path, ImageFormat::Png).unwrap();
    }

    #[test]
    fn images_are_recognised_by_content_and_thumbnailed_small() {
        let dir = tempfile::tempdir().unwrap();
        // A PNG named .dat is still an image.
        let big = dir.path().join("photo.dat");
        write_png(&big, 1200, 600);
        let (format, w, h) = sniff_image(&big).unwrap();
        assert_eq!((format, w, h), (ImageFormat::Png, 1200, 600));
        let thumb = thumbnail(&big).unwrap();
        assert!(thumb.len() <= MAX_THUMBNAIL_LEN);
        let decoded = image::load_from_memory_with_format(&thumb, ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (256, 128));

        // Noise compresses badly: the thumbnail still fits the limit.
        let noisy = dir.path().join("noise.png");
        let mut state = 12345u32;
        let img = image::RgbImage::from_fn(2000, 2000, |_, _| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = state.to_le_bytes();
            image::Rgb([b[1], b[2], b[3]])
        });
        img.save_with_format(&noisy, ImageFormat::Png).unwrap();
        let thumb = thumbnail(&noisy).unwrap();
        assert!(thumb.len() <= MAX_THUMBNAIL_LEN, "{}", thumb.len());

        // A small image is not enlarged.
        let small = dir.path().join("small.png");
        write_png(&small, 10, 20);
        let decoded = image::load_from_memory(&thumbnail(&small).unwrap()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (10, 20));

        // Text is no image; a truncated PNG sniffs but does not decode.
        let text = dir.path().join("a.png");
        std::fs::write(&text, "not an image").unwrap();
        assert!(sniff_image(&text).is_none());
        let truncated = dir.path().join("t.png");
        let bytes = std::fs::read(&big).unwrap();
        std::fs::write(&truncated, &bytes[..200]).unwrap();
        assert!(thumbnail(&truncated).is_none());
        assert_eq!(mime_for_name("报告.PDF"), "application/pdf");
        assert_eq!(mime_for_name("noext"), "application/octet-stream");
    }
}
