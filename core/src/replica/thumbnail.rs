//! A photo's thumbnail: a small JPEG made when the photo is added, which
//! travels before the full size so the office sees every photo within
//! minutes even on 2G. Made with the `image` crate (decoders for JPEG, PNG
//! and WebP; HEIC and GIF photos go without one).

use std::io::Cursor;

use image::{ImageReader, Limits};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// JPEG quality of a thumbnail: about 10–25 KB for a phone photo.
const THUMBNAIL_QUALITY: u8 = 70;
/// The memory a decode may take: a 48-megapixel photo's pixels, no bomb.
const DECODE_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// The thumbnail of a photo's bytes, as JPEG, or `None` when they cannot be
/// decoded here (HEIC, a damaged file): the photo then goes without one.
pub fn thumbnail_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut limits = Limits::default();
    limits.max_alloc = Some(DECODE_LIMIT_BYTES);
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    reader.limits(limits);
    let photo = reader.decode().ok()?;
    let small = photo.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY).encode_image(&small).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_photo_gets_a_small_jpeg_and_what_cannot_be_decoded_gets_none() {
        let photo = image::RgbImage::from_fn(1600, 1200, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(photo).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let thumb = thumbnail_of(&png).unwrap();
        let size = imagesize::blob_size(&thumb).unwrap();
        assert_eq!((size.width, size.height), (320, 240));
        assert!(matches!(imagesize::image_type(&thumb), Ok(imagesize::ImageType::Jpeg)));
        assert!(thumb.len() < 40_000, "{} bytes", thumb.len());
        assert_eq!(thumbnail_of(b"\x89PNG\r\n\x1a\n and then nothing"), None);
    }
}
