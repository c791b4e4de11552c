//! Byte limits on what a Kubernetes value may carry into the engine. `eventspan::wire` applies them
//! as it decodes (and marks what it cut); the engine applies them again to what it is given, so
//! its byte bounds hold for any caller.
//!
//! Everything the engine keeps (objects, open spans, held events, span attributes) is bounded by
//! entries; these limits bound each entry, so the engine's memory has a byte bound (README,
//! "Memory bounds"). Kubernetes itself keeps real values far below them (names of at most 253
//! bytes, an events.k8s.io note of at most 1 KiB); only crafted input reaches them. A cut event
//! says so (`eventspan.truncated`); a label beyond Kubernetes' own limits is dropped, since a
//! selector could never have matched it.

/// An event's message (`message` or `note`). OpenTelemetry SDKs leave attribute values unlimited
/// by default; 4 KiB keeps a kubelet's long image-pull error whole.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Any other string: names, uids, kinds, reasons, reporting components, field paths.
pub const MAX_FIELD_BYTES: usize = 512;
/// Labels kept per object, and their sizes as Kubernetes validates them (a prefix of up to 253
/// bytes, `/`, a name of up to 63; values of up to 63).
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_BYTES: usize = 317;
pub const MAX_LABEL_VALUE_BYTES: usize = 63;
/// Owner references read per object (the engine uses the controller's, or the first).
pub const MAX_OWNERS: usize = 16;
/// managedFields entries read per object.
pub const MAX_SPEC_CHANGES: usize = 32;

/// Cuts `s` to at most `max` bytes, at a character boundary; true if it cut.
pub fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    // A cut string must not keep its former allocation: the bounds are on memory.
    s.shrink_to_fit();
    true
}

/// Cuts each string to [`MAX_FIELD_BYTES`]; true if any was cut.
pub fn cut_fields<const N: usize>(fields: [&mut String; N]) -> bool {
    fields
        .into_iter()
        .fold(false, |cut_any, f| cut(f, MAX_FIELD_BYTES) | cut_any)
}

/// Cuts an event's strings to their limits; true if any was cut.
pub fn bound_event(e: &mut super::model::EventRecord) -> bool {
    let mut cut_any = cut(&mut e.message, MAX_MESSAGE_BYTES);
    cut_any |= cut_fields([
        &mut e.uid,
        &mut e.name,
        &mut e.namespace,
        &mut e.reason,
        &mut e.action,
        &mut e.reporting_controller,
        &mut e.reporting_instance,
        &mut e.revision,
    ]);
    for r in std::iter::once(&mut e.involved).chain(e.related.as_deref_mut()) {
        cut_any |= cut_fields([
            &mut r.kind,
            &mut r.api_version,
            &mut r.namespace,
            &mut r.name,
            &mut r.uid,
            &mut r.field_path,
        ]);
    }
    cut_any
}

/// `name` cut to [`MAX_FIELD_BYTES`], at a character boundary.
pub fn field(name: &str) -> &str {
    if name.len() <= MAX_FIELD_BYTES {
        return name;
    }
    let mut end = MAX_FIELD_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// An object's metadata within the limits, if it is not already (a copy only then).
pub fn bounded_meta(meta: &super::model::ObjectMeta) -> Option<super::model::ObjectMeta> {
    if within(meta) {
        return None;
    }
    let mut m = meta.clone();
    bound_meta(&mut m);
    Some(m)
}

/// Whether an object's metadata is within the limits already (what [`bound_meta`] would keep).
fn within(meta: &super::model::ObjectMeta) -> bool {
    let long = |s: &String| s.len() > MAX_FIELD_BYTES;
    let label_ok = |(k, v): &(String, String)| {
        k.len() <= MAX_LABEL_KEY_BYTES && v.len() <= MAX_LABEL_VALUE_BYTES
    };
    ![
        &meta.uid,
        &meta.kind,
        &meta.api_version,
        &meta.namespace,
        &meta.name,
    ]
    .into_iter()
    .any(long)
        && meta.labels.len() <= MAX_LABELS
        && meta.labels.iter().all(label_ok)
        && meta.owners.len() <= MAX_OWNERS
        && !meta.owners.iter().any(|o| {
            [&o.kind, &o.api_version, &o.name, &o.uid]
                .into_iter()
                .any(long)
        })
        && meta.spec_changes.len() <= MAX_SPEC_CHANGES
        && !meta
            .spec_changes
            .iter()
            .any(|c| long(&c.manager) || long(&c.operation))
        && !meta
            .state
            .as_ref()
            .and_then(|s| s.outcome.as_ref())
            .is_some_and(|o| long(&o.message) || long(&o.reason))
}

/// Cuts an object's metadata to the limits, in place: strings cut, labels beyond Kubernetes'
/// sizes dropped, lists shortened.
pub fn bound_meta(m: &mut super::model::ObjectMeta) {
    cut_fields([
        &mut m.uid,
        &mut m.kind,
        &mut m.api_version,
        &mut m.namespace,
        &mut m.name,
    ]);
    m.labels
        .retain(|(k, v)| k.len() <= MAX_LABEL_KEY_BYTES && v.len() <= MAX_LABEL_VALUE_BYTES);
    m.labels.truncate(MAX_LABELS);
    m.owners.truncate(MAX_OWNERS);
    for o in &mut m.owners {
        cut_fields([&mut o.kind, &mut o.api_version, &mut o.name, &mut o.uid]);
    }
    m.spec_changes.truncate(MAX_SPEC_CHANGES);
    for c in &mut m.spec_changes {
        cut_fields([&mut c.manager, &mut c.operation]);
    }
    if let Some(o) = m.state.as_mut().and_then(|s| s.outcome.as_mut()) {
        cut_fields([&mut o.message, &mut o.reason]);
    }
    if let Some(t) = m.scale_target.as_mut() {
        cut_fields([&mut t.kind, &mut t.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_character_boundary() {
        let mut s = "aé".repeat(3); // 9 bytes: a, é (2 bytes), ...
        assert!(cut(&mut s, 5));
        assert_eq!(s, "aéa");
        let mut short = String::from("abc");
        assert!(!cut(&mut short, 3));
        assert_eq!(short, "abc");
        let (mut a, mut b) = ("x".repeat(600), String::from("y"));
        assert!(cut_fields([&mut a, &mut b]));
        assert_eq!((a.len(), b.as_str()), (MAX_FIELD_BYTES, "y"));
    }
}
