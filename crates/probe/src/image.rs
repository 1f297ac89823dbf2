//! Images: dimensions from the header alone (`imagesize`, which reads a few hundred bytes and
//! skips JPEG segments by seeking), and thumbnails (`image`, built with the JPEG, PNG, GIF and
//! WebP decoders only).
//!
//! A thumbnail is a decode of the whole picture, so the size is checked first: the header's
//! width × height must be at most [`MAX_PIXELS`] (and each side at most 65,535) (a 100 KB PNG can claim 50,000 × 50,000
//! pixels: a decompression bomb), and the decoder runs under `image`'s [`Limits`] with the same
//! bound in case the header lied.

use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::{MediaInfo, ProbeError, MAX_DIMENSION, MAX_PIXELS};

/// JPEG quality of thumbnails: small files, no visible blocks at 320 px.
const QUALITY: u8 = 80;

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, info: &mut MediaInfo) -> Result<(), ProbeError> {
    reader.seek(SeekFrom::Start(0))?;
    let size = imagesize::reader_size(BufReader::new(reader)).map_err(|_| ProbeError::Malformed("image header"))?;
    info.set_size(size.width as u64, size.height as u64);
    Ok(())
}

/// Decodes the image in `bytes` and returns a JPEG of it no larger than `max_side` on either
/// side (aspect kept, never enlarged, turned by its EXIF orientation, transparency over white),
/// with its MIME type.
///
/// Errors: [`ProbeError::TooLarge`] past [`MAX_PIXELS`]; [`ProbeError::Image`] for a format
/// without a decoder here or a corrupt or truncated image.
pub fn thumbnail(bytes: &[u8], max_side: u32) -> Result<(Vec<u8>, &'static str), ProbeError> {
    let size = imagesize::blob_size(bytes).map_err(|_| ProbeError::Malformed("image header"))?;
    let (w, h) = (size.width as u64, size.height as u64);
    if w == 0 || h == 0 || w > MAX_DIMENSION || h > MAX_DIMENSION || w * h > MAX_PIXELS {
        return Err(ProbeError::TooLarge("image dimensions"));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION as u32);
    limits.max_image_height = Some(MAX_DIMENSION as u32);
    // RGBA at 8 bits, plus the decoder's own buffers.
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    let image_err = |e: image::ImageError| ProbeError::Image(e.to_string());

    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(ProbeError::Io)?;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(image_err)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ProbeError::TooLarge("image dimensions"));
    }
    let orientation = decoder.orientation().map_err(image_err)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_err)?;
    image.apply_orientation(orientation);

    let max_side = max_side.max(1);
    if image.width() > max_side || image.height() > max_side {
        image = image.thumbnail(max_side, max_side);
    }
    let rgb = flatten(&image);
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, QUALITY).encode_image(&rgb).map_err(image_err)?;
    Ok((out, "image/jpeg"))
}

/// RGB with any transparency blended over white (JPEG has no alpha; dropping it would show
/// whatever colour the transparent pixels happen to hold, often black).
fn flatten(image: &DynamicImage) -> image::RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}
