//! What free text the API accepts, and how it is stored (SPEC "Limits"; docs/api.md "Text").
//!
//! Every free-text field (names, job title, headline, reasons, location ids) is stored in
//! Unicode NFC, trimmed, and refused (422) when it holds a control character, a bidi control,
//! a line or paragraph separator, or a character that renders as nothing. The zero-width
//! joiners (U+200C, U+200D) and variation selectors stay allowed there: Persian, Indic
//! scripts and emoji need them.
//!
//! Custom role names are stricter, since a role name is how people tell roles apart: no
//! format or invisible character at all, runs of spaces folded into one, and a name must not
//! look like another: two names are the same role name when their confusable skeletons
//! (Unicode TS #39, of the lower-cased name) are equal, so "Admin", " admin ", "аdmin"
//! (Cyrillic а), "Admin\u{200b}" and "ADMIN" all collide with the built-in `admin`.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters that
/// render as nothing when not supported.
fn default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// The bidi controls (embeddings, overrides, isolates and marks): they reorder what is shown.
fn bidi_control(c: char) -> bool {
    matches!(c as u32, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

/// Blank-looking characters that are not in any of the categories above.
fn blank(c: char) -> bool {
    matches!(c as u32, 0x2800 | 0x3164 | 0xFFA0 | 0x115F | 0x1160)
}

/// Why `c` may not appear in free text, if it may not.
fn refused_in_text(c: char) -> Option<&'static str> {
    if c.is_control() {
        return Some("control characters");
    }
    if bidi_control(c) {
        return Some("bidirectional control characters");
    }
    match c.general_category() {
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("line or paragraph separators")
        }
        GeneralCategory::Surrogate | GeneralCategory::PrivateUse => Some("private-use characters"),
        // Zero-width (non-)joiners shape Persian, Indic scripts and emoji sequences.
        GeneralCategory::Format if !matches!(c, '\u{200C}' | '\u{200D}') => {
            Some("invisible format characters")
        }
        _ if blank(c) => Some("invisible characters"),
        _ => None,
    }
}

/// Free text: NFC, trimmed, not blank, at most `max` characters, none of the refused
/// characters. Returns the text as it will be stored.
pub fn free_text(s: &str, max: usize) -> Result<String, String> {
    if let Some(why) = s.chars().find_map(refused_in_text) {
        return Err(format!("must not contain {why}"));
    }
    let clean: String = s.nfc().collect::<String>().trim().to_owned();
    if clean.is_empty() {
        return Err("must not be empty".into());
    }
    if clean.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(clean)
}

/// A custom role name: free text without any invisible, format or variation character, its
/// spaces folded (every run of white space becomes one ASCII space).
pub fn role_name(s: &str, max: usize) -> Result<String, String> {
    if let Some(c) = s
        .chars()
        .find(|c| default_ignorable(*c) || c.general_category() == GeneralCategory::Format)
    {
        return Err(format!(
            "must not contain invisible or format characters (U+{:04X})",
            c as u32
        ));
    }
    let clean = free_text(s, max)?;
    Ok(clean.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// What two role names are compared by: the confusable skeleton of the lower-cased name
/// (lower-cased again, since a skeleton may map to capitals). Equal skeletons, same name.
pub fn role_name_skeleton(name: &str) -> String {
    let lower: String = name.nfc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&lower)
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton_of(raw: &str) -> String {
        role_name_skeleton(&role_name(raw, 100).unwrap_or_else(|e| panic!("{raw:?}: {e}")))
    }

    #[test]
    fn names_that_only_look_different_share_a_skeleton() {
        let admin = role_name_skeleton("admin");
        for look_alike in ["Admin", " admin ", "ADMIN", "\u{0430}dmin", "adm\u{0456}n"] {
            assert_eq!(skeleton_of(look_alike), admin, "{look_alike:?}");
        }
        // Composed and decomposed forms are one name, stored composed.
        let decomposed = role_name("Cafe\u{0301}", 100).unwrap_or_default();
        assert_eq!(decomposed, "Caf\u{e9}");
        assert_eq!(skeleton_of("Caf\u{e9}"), skeleton_of("Cafe\u{0301}"));
        assert_eq!(skeleton_of("Team  lead"), skeleton_of("Team lead"));
        assert_ne!(skeleton_of("Recruiter"), skeleton_of("Reviewer"));
    }

    #[test]
    fn role_names_refuse_invisible_format_and_bidi_characters() {
        for bad in [
            "Admin\u{200b}",
            "Ad\u{202e}nimda",
            "Lead\u{2066}x\u{2069}",
            "\u{feff}Ops",
            "Ops\u{200d}",
            "Ops\u{fe0f}",
            "Ops\u{3164}",
            "Ops\u{0007}",
            "Ops\u{2028}x",
            "   ",
        ] {
            assert!(role_name(bad, 100).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            role_name("  Team\u{3000}lead ", 100).as_deref(),
            Ok("Team lead")
        );
    }

    #[test]
    fn free_text_keeps_joiners_and_refuses_what_reorders_or_hides() {
        // Persian with a zero-width non-joiner, an emoji family with joiners: allowed.
        for good in [
            "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
            "\u{1f468}\u{200d}\u{1f469}",
            "José",
        ] {
            assert_eq!(free_text(good, 100).as_deref(), Ok(good), "{good:?}");
        }
        for bad in [
            "Eve\u{202e}gnp.exe",
            "A\u{200b}",
            "x\u{2029}y",
            "\u{0000}",
            "\u{e000}",
        ] {
            assert!(free_text(bad, 100).is_err(), "{bad:?} accepted");
        }
        assert_eq!(free_text(" Ada ", 100).as_deref(), Ok("Ada"));
        assert_eq!(
            free_text("e\u{301}", 1).as_deref(),
            Ok("\u{e9}"),
            "counted after NFC"
        );
    }

    #[test]
    fn stored_text_is_a_fixed_point() {
        for raw in [
            " Ada ",
            "Cafe\u{301}",
            "\u{1f468}\u{200d}\u{1f469}",
            "Ω",
            "\u{212b}",
        ] {
            let once = free_text(raw, 100).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(free_text(&once, 100), Ok(once.clone()), "{raw:?}");
        }
    }
}
