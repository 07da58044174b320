//! What changed, in words: the words a capture showed, with their boxes, travel inside its PNG
//! (an `iTXt` chunk, keyword [`KEYWORD`]); for each changed region the words of the baseline and
//! of the capture inside it are compared, and the difference is told as `$49 → $79`,
//! `+ Free shipping`, `- Contact sales`, or as a change without text (an image, a colour).
//!
//! Pure: bytes in, bytes out. The words are read by the capture engine (`capture::engine`).

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use similar::{Algorithm, DiffOp};

use super::Region;

/// The `iTXt` keyword of the words chunk.
pub const KEYWORD: &str = "vigil:text";
/// Most words a capture records (the engine stops there).
pub const MAX_WORDS: usize = 20_000;
/// Longest word kept, in characters (the engine cuts longer ones).
pub const MAX_WORD_CHARS: usize = 100;
/// Most bytes the words may take once inflated; a larger chunk is ignored.
const MAX_INFLATED: usize = 8 * 1024 * 1024;
/// Words of one region compared on each side; with more, the region's words are not compared
/// (the first ones alone would tell a shifted window as changes). Bounds the
/// word diff: Myers takes at most (n + m) × d steps, 4 million for a region, 200 million for the
/// 50 regions a diff can have.
const MAX_REGION_WORDS: usize = 1_000;
/// Changes told per region.
const MAX_CHANGES: usize = 10;
/// Longest headline ([`headline`]) the API and the alerts show, in characters.
pub const HEADLINE_CHARS: usize = 200;
/// Characters of one side of a change kept in the report.
const MAX_CHANGE_CHARS: usize = 120;

/// A word and its box in image pixels: `[x, y, width, height, "text"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Word(pub u32, pub u32, pub u32, pub u32, pub String);

impl Word {
    fn rect(&self) -> Region {
        Region { x: self.0, y: self.1, width: self.2, height: self.3 }
    }

    fn text(&self) -> &str {
        &self.4
    }
}

/// The words of a capture, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSnapshot {
    pub version: u32,
    pub words: Vec<Word>,
}

/// One difference in the words of a changed region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TextChange {
    Replaced { before: String, after: String },
    Added { text: String },
    Removed { text: String },
}

impl std::fmt::Display for TextChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextChange::Replaced { before, after } => write!(f, "{before} → {after}"),
            TextChange::Added { text } => write!(f, "+ {text}"),
            TextChange::Removed { text } => write!(f, "- {text}"),
        }
    }
}

/// A changed region and what its words say changed: nothing (`text` empty) is a change of an
/// image, a colour or a shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionChange {
    pub region: Region,
    pub text: Vec<TextChange>,
    /// More words than are compared overlap the region (a page reflowed from the top): its words
    /// were not compared, and `text` is empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub too_many_words: bool,
}

impl RegionChange {
    /// What the region's words say changed, in a few words: the first three changes, "image or
    /// graphic change", or "too many words to compare".
    pub fn said(&self, max_chars: usize) -> String {
        if self.too_many_words {
            return "too many words to compare".into();
        }
        if self.text.is_empty() {
            return "image or graphic change".into();
        }
        let said: Vec<String> = self.text.iter().take(3).map(|t| t.to_string()).collect();
        cut_to(&said.join("; "), max_chars)
    }
}

/// `png` with `words` in an `iTXt` chunk before its `IEND`; `None` when `png` has no `IEND`
/// where its chunks say.
pub fn embed(png: &[u8], words: &TextSnapshot) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(words).expect("words serialise");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&json).expect("writing to memory");
    let compressed = z.finish().expect("writing to memory");
    // keyword, NUL, compressed, method 0, no language tag, NUL, no translated keyword, NUL, text
    let mut data = Vec::with_capacity(KEYWORD.len() + 5 + compressed.len());
    data.extend_from_slice(KEYWORD.as_bytes());
    data.extend_from_slice(&[0, 1, 0, 0, 0]);
    data.extend_from_slice(&compressed);
    with_chunk(png, b"iTXt", &data)
}

/// `png` with a chunk of `kind` holding `data` before its `IEND`; `None` when `png` has no `IEND`
/// where its chunks say.
pub(crate) fn with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Option<Vec<u8>> {
    let iend = chunks(png).find(|c| &c.kind == b"IEND")?.start;
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    let mut out = Vec::with_capacity(png.len() + data.len() + 12);
    out.extend_from_slice(&png[..iend]);
    out.extend_from_slice(&u32::try_from(data.len()).ok()?.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(&png[iend..]);
    Some(out)
}

/// The words embedded in `png`, if it has them (a capture of vigil's engine; not a baseline made
/// before words were recorded, nor another provider's capture) and they can be read within the
/// limits.
pub fn extract(png: &[u8]) -> Option<TextSnapshot> {
    let chunk = chunks(png).find(|c| &c.kind == b"iTXt" && c.data.starts_with(KEYWORD.as_bytes()))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(b"iTXt");
    crc.update(chunk.data);
    if crc.finalize() != chunk.crc {
        return None;
    }
    let rest = chunk.data.strip_prefix(KEYWORD.as_bytes())?.strip_prefix(&[0])?;
    let (&compressed, rest) = rest.split_first()?;
    let (_method, rest) = rest.split_first()?;
    let rest = &rest[rest.iter().position(|&b| b == 0)? + 1..]; // language tag
    let text = &rest[rest.iter().position(|&b| b == 0)? + 1..]; // translated keyword
    let json = match compressed {
        0 if text.len() <= MAX_INFLATED => text.to_vec(),
        0 => return None,
        _ => {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(text).take(MAX_INFLATED as u64 + 1).read_to_end(&mut out).ok()?;
            if out.len() > MAX_INFLATED {
                return None;
            }
            out
        }
    };
    let mut snapshot: TextSnapshot = serde_json::from_slice(&json).ok()?;
    snapshot.words.truncate(MAX_WORDS);
    for word in &mut snapshot.words {
        word.4 = clean(&word.4);
    }
    snapshot.words.retain(|w| !w.4.is_empty());
    Some(snapshot)
}

/// Whether `png` has a words chunk (without reading it).
pub fn has_words(png: &[u8]) -> bool {
    chunks(png).any(|c| &c.kind == b"iTXt" && c.data.starts_with(KEYWORD.as_bytes()))
}

/// `word` cut to [`MAX_WORD_CHARS`], without control and format characters (also for names a
/// person or a peer gives: reviewers, Slack handles): a word is shown in
/// terminals, logs and Slack, where an escape sequence, a line break or a bidi override (making
/// `$79 → $49` read as `$49 → $79`) would lie about it.
pub fn clean(word: &str) -> String {
    word.chars()
        .filter(|&c| {
            !(c.is_control()
                || matches!(c, '\u{AD}' | '\u{61C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
                    | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'))
        })
        .take(MAX_WORD_CHARS)
        .collect()
}

pub(crate) struct Chunk<'a> {
    /// Offset of the chunk's length field.
    pub(crate) start: usize,
    pub(crate) kind: [u8; 4],
    pub(crate) data: &'a [u8],
    pub(crate) crc: u32,
}

/// The chunks of a PNG, until the first that does not fit.
pub(crate) fn chunks(png: &[u8]) -> impl Iterator<Item = Chunk<'_>> {
    let mut at = if png.starts_with(b"\x89PNG\r\n\x1a\n") { 8 } else { png.len() };
    std::iter::from_fn(move || {
        let start = at;
        let len = u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = png.get(at + 4..at + 8)?.try_into().ok()?;
        let data = png.get(at + 8..(at + 8).checked_add(len)?)?;
        at = at + 12 + len;
        let crc = u32::from_be_bytes(png.get(at - 4..at)?.try_into().ok()?);
        Some(Chunk { start, kind, data, crc })
    })
}

/// What the words inside each changed region say changed, from the baseline's words to the
/// capture's. Words under a mask are left out.
pub fn compare<'a>(
    regions: &[Region],
    masks: &[Region],
    before: &'a TextSnapshot,
    after: &'a TextSnapshot,
) -> Vec<RegionChange> {
    let unmasked = |w: &&Word| !masks.iter().any(|m| contains(m, &w.rect()));
    regions
        .iter()
        .map(|region| {
            let inside = |s: &'a TextSnapshot| -> Vec<&'a str> {
                s.words
                    .iter()
                    .filter(unmasked)
                    .filter(|w| overlaps(region, &w.rect()))
                    .take(MAX_REGION_WORDS + 1)
                    .map(Word::text)
                    .collect()
            };
            let (before, after) = (inside(before), inside(after));
            let too_many_words = before.len() > MAX_REGION_WORDS || after.len() > MAX_REGION_WORDS;
            let text = if too_many_words { Vec::new() } else { word_changes(&before, &after) };
            RegionChange { region: *region, text, too_many_words }
        })
        .collect()
}

/// The differences between two word sequences, runs of words joined by spaces. The words are
/// compared as numbers (one per distinct word), so a long word costs one comparison.
fn word_changes(before: &[&str], after: &[&str]) -> Vec<TextChange> {
    let mut ids = std::collections::HashMap::new();
    let mut id = |w: &str| {
        let next = ids.len() as u32;
        *ids.entry(w.to_owned()).or_insert(next)
    };
    let (old, new): (Vec<u32>, Vec<u32>) =
        (before.iter().map(|w| id(w)).collect(), after.iter().map(|w| id(w)).collect());
    let join = |words: &[&str]| cut(&words.join(" "));
    // (`capture_diff_slices` tells a removal next to an addition as one `Replace`.)
    similar::capture_diff_slices(Algorithm::Myers, &old, &new)
        .into_iter()
        .filter_map(|op| match op {
            DiffOp::Equal { .. } => None,
            DiffOp::Delete { old_index, old_len, .. } => {
                Some(TextChange::Removed { text: join(&before[old_index..old_index + old_len]) })
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                Some(TextChange::Added { text: join(&after[new_index..new_index + new_len]) })
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => Some(TextChange::Replaced {
                before: join(&before[old_index..old_index + old_len]),
                after: join(&after[new_index..new_index + new_len]),
            }),
        })
        .take(MAX_CHANGES)
        .collect()
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_CHANGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// `s` in at most `max` characters, the last one `…` when cut.
fn cut_to(s: &str, max: usize) -> String {
    match s.chars().count() > max {
        true => s.chars().take(max.saturating_sub(1)).chain(std::iter::once('…')).collect(),
        false => s.to_owned(),
    }
}

fn overlaps(a: &Region, b: &Region) -> bool {
    let (ax1, ay1) = (u64::from(a.x) + u64::from(a.width), u64::from(a.y) + u64::from(a.height));
    let (bx1, by1) = (u64::from(b.x) + u64::from(b.width), u64::from(b.y) + u64::from(b.height));
    u64::from(a.x) < bx1 && u64::from(b.x) < ax1 && u64::from(a.y) < by1 && u64::from(b.y) < ay1
}

/// Whether `outer` holds the centre of `inner`.
fn contains(outer: &Region, inner: &Region) -> bool {
    let (cx, cy) =
        (u64::from(inner.x) * 2 + u64::from(inner.width), u64::from(inner.y) * 2 + u64::from(inner.height));
    let (x0, y0) = (u64::from(outer.x) * 2, u64::from(outer.y) * 2);
    cx >= x0 && cy >= y0 && cx < x0 + u64::from(outer.width) * 2 && cy < y0 + u64::from(outer.height) * 2
}

/// A hex digest of the words that changed (sorted, each once), the regions whose words were not
/// compared left out: what an ignored change must say again (`src/ignore/`).
pub fn words_key(changes: &[RegionChange]) -> String {
    use sha2::{Digest, Sha256};
    let mut words: Vec<String> = changes
        .iter()
        .filter(|c| !c.too_many_words)
        .flat_map(|c| c.text.iter().map(|t| t.to_string()))
        .collect();
    words.sort();
    words.dedup();
    Sha256::digest(words.join("\0").as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What identifies a change, whatever page it is on: a hex digest of the words that changed,
/// sorted, when every changed region says some; otherwise also of the regions without words and
/// the changed pixel count (so a broken image beside the same new word is another change).
/// `None` for a page whose size changed, or without regions.
pub fn change_key(
    regions: &[Region],
    changes: &[RegionChange],
    diff_pixels: i64,
    size_changed: bool,
) -> Option<String> {
    use sha2::{Digest, Sha256};
    if size_changed || regions.is_empty() {
        return None;
    }
    let said = |r: &Region| {
        changes.iter().find(|c| c.region == *r).filter(|c| !c.text.is_empty() && !c.too_many_words)
    };
    let mut words: Vec<String> =
        regions.iter().filter_map(said).flat_map(|c| c.text.iter().map(|t| t.to_string())).collect();
    words.sort();
    words.dedup();
    let mut silent: Vec<String> = regions
        .iter()
        .filter(|r| said(r).is_none())
        .map(|r| format!("{},{},{},{}", r.x, r.y, r.width, r.height))
        .collect();
    silent.sort();
    let what = match silent.is_empty() {
        true => format!("words\0{}", words.join("\0")),
        false => format!("pixels\0{diff_pixels}\0{}\0{}", silent.join("\0"), words.join("\0")),
    };
    Some(Sha256::digest(what.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// The words' changes of a run in one line of at most `max_chars` characters (at least 20), for
/// an alert's first line: as many changes as fit, then how many more there are; `None` when no
/// region's words changed.
pub fn headline(changes: &[RegionChange], max_chars: usize) -> Option<String> {
    let all: Vec<String> = changes.iter().flat_map(|c| &c.text).map(|t| t.to_string()).collect();
    let (first, rest) = all.split_first()?;
    let suffix = |n: usize| if n == 0 { String::new() } else { format!(" (and {n} more)") };
    let budget = max_chars.saturating_sub(suffix(rest.len()).chars().count()).max(1);
    let mut line = match first.chars().count() > budget {
        true => first.chars().take(budget - 1).chain(std::iter::once('…')).collect(),
        false => first.clone(),
    };
    let mut shown = 1;
    for next in rest {
        if line.chars().count() + 2 + next.chars().count() > budget {
            break;
        }
        line.push_str("; ");
        line.push_str(next);
        shown += 1;
    }
    Some(line + &suffix(all.len() - shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[(u32, u32, &str)]) -> TextSnapshot {
        TextSnapshot {
            version: 1,
            words: list.iter().map(|&(x, y, t)| Word(x, y, 10 * t.len() as u32, 16, t.to_owned())).collect(),
        }
    }

    fn region(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region { x, y, width, height }
    }

    fn png() -> Vec<u8> {
        let img = crate::diff::Image::new(2, 2, vec![255; 16]).unwrap();
        crate::diff::encode_png(&img).unwrap()
    }

    #[test]
    fn words_travel_in_the_png_and_leave_its_pixels_alone() {
        let snapshot = words(&[(10, 10, "Pro"), (60, 10, "$49"), (0, 0, "naïve — ünïcödé")]);
        let plain = png();
        assert_eq!(extract(&plain), None, "a PNG without words has none");
        let with = embed(&plain, &snapshot).expect("a PNG with an IEND");
        assert_eq!(extract(&with), Some(snapshot));
        let limits = crate::diff::Limits::default();
        assert_eq!(
            crate::diff::decode_png(&with, &limits).unwrap(),
            crate::diff::decode_png(&plain, &limits).unwrap()
        );
        assert!(with.ends_with(&plain[plain.len() - 12..]), "IEND stays last");
    }

    #[test]
    fn a_broken_or_hostile_chunk_gives_no_words() {
        let plain = png();
        assert_eq!(embed(&plain[..plain.len() - 12], &TextSnapshot::default()), None, "no IEND");
        let with = embed(&plain, &words(&[(0, 0, "a")])).unwrap();
        for cut in 0..with.len() {
            let _ = extract(&with[..cut]); // never panics
        }
        // Every byte of the chunk, and of the PNG around it, corrupted in turn: no panic, and
        // never words other than the ones written (the chunk's CRC).
        for at in 0..with.len() {
            let mut bad = with.clone();
            bad[at] ^= 0x5a;
            let got = extract(&bad);
            assert!(got.is_none() || got == Some(words(&[(0, 0, "a")])), "byte {at}: {got:?}");
        }
        // A chunk that inflates past the limit.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![b' '; MAX_INFLATED + 10]).unwrap();
        let bomb = z.finish().unwrap();
        let mut data = KEYWORD.as_bytes().to_vec();
        data.extend_from_slice(&[0, 1, 0, 0, 0]);
        data.extend_from_slice(&bomb);
        let mut png = plain[..plain.len() - 12].to_vec();
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(b"iTXt");
        png.extend_from_slice(&data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(b"iTXt");
        crc.update(&data);
        png.extend_from_slice(&crc.finalize().to_be_bytes());
        png.extend_from_slice(&plain[plain.len() - 12..]);
        assert_eq!(extract(&png), None);
    }

    #[test]
    fn a_price_change_is_told_in_words() {
        let before = words(&[
            (0, 0, "Pro"),
            (50, 0, "$49"),
            (100, 0, "/month"),
            (0, 100, "Contact"),
            (80, 100, "sales"),
        ]);
        let after = words(&[
            (0, 0, "Pro"),
            (50, 0, "$79"),
            (100, 0, "/month"),
            (0, 100, "Contact"),
            (80, 100, "sales"),
        ]);
        let changes = compare(&[region(55, 2, 12, 12)], &[], &before, &after);
        assert_eq!(changes[0].text, [TextChange::Replaced { before: "$49".into(), after: "$79".into() }]);
        assert_eq!(headline(&changes, 200).as_deref(), Some("$49 → $79"));
    }

    #[test]
    fn added_and_removed_words_are_told_apart_from_a_graphic_change() {
        let before = words(&[(0, 0, "Contact"), (80, 0, "sales")]);
        let after = words(&[(0, 0, "Free"), (50, 0, "shipping"), (0, 40, "Buy"), (0, 80, "now")]);
        let removed = words(&[(0, 0, "Buy"), (0, 40, "now")]);
        let changes = compare(&[region(0, 0, 200, 20)], &[], &before, &after);
        assert_eq!(
            changes[0].text,
            [TextChange::Replaced { before: "Contact sales".into(), after: "Free shipping".into() }]
        );
        let added = compare(&[region(0, 30, 200, 80)], &[], &removed, &after);
        assert_eq!(added[0].text, [TextChange::Added { text: "Buy".into() }]);
        let gone = compare(&[region(0, 30, 200, 80)], &[], &after, &removed);
        assert_eq!(gone[0].text, [TextChange::Removed { text: "Buy".into() }]);
        // A region over more words than are compared says so, and tells no change.
        let many = TextSnapshot {
            version: 1,
            words: (0..=MAX_REGION_WORDS as u32)
                .map(|i| Word(i % 100, i / 100 * 20, 5, 16, format!("w{i}")))
                .collect(),
        };
        let mut shifted = many.clone();
        shifted.words.insert(0, Word(0, 0, 5, 16, "new".into()));
        let whole = compare(&[region(0, 0, 2000, 20_000)], &[], &many, &shifted);
        assert!(whole[0].too_many_words && whole[0].text.is_empty());
        assert_eq!(whole[0].said(100), "too many words to compare");
        let graphic = compare(&[region(300, 300, 20, 20)], &[], &before, &after);
        assert!(graphic[0].text.is_empty(), "no words there: an image change");
        assert_eq!(headline(&graphic, 200), None);
    }

    #[test]
    fn masked_words_and_long_lists_are_left_out() {
        let before = words(&[(0, 0, "12:01"), (100, 0, "Total")]);
        let after = words(&[(0, 0, "12:02"), (100, 0, "Sum")]);
        let changes = compare(&[region(0, 0, 200, 20)], &[region(0, 0, 60, 20)], &before, &after);
        assert_eq!(changes[0].text, [TextChange::Replaced { before: "Total".into(), after: "Sum".into() }]);
        let many: Vec<RegionChange> = (0..30)
            .map(|i| RegionChange {
                region: region(0, i, 1, 1),
                text: vec![TextChange::Added { text: format!("word{i}") }],
                too_many_words: false,
            })
            .collect();
        let line = headline(&many, 40).unwrap();
        assert_eq!(line, "+ word0; + word1; + word2 (and 27 more)");
        for max in [40, 200] {
            let long = vec![RegionChange {
                region: region(0, 0, 1, 1),
                text: vec![
                    TextChange::Added { text: "é".repeat(300) },
                    TextChange::Removed { text: "x".into() },
                ],
                too_many_words: false,
            }];
            let line = headline(&long, max).unwrap();
            assert_eq!(line.chars().count(), max, "{line}");
            assert!(line.ends_with("é… (and 1 more)"), "{line}");
        }
        assert_eq!(clean("$4\u{202E}97\u{1b}[31m\n"), "$497[31m", "control and bidi characters go");
        let long = "x".repeat(500);
        assert_eq!(cut(&long).chars().count(), MAX_CHANGE_CHARS + 1);
    }
}
