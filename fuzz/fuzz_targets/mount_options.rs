//! `berth::rootfs::options::parse` (the `options` of a `config.json` mount).
//! The input is the option list, one option a line (`fuzz/dict/` has the
//! option names for libFuzzer's `-dict`).
//!
//! For every list that parses, what reaches the kernel must make sense:
//! flags to set and to clear are disjoint, filesystem data items are
//! non-empty, comma-free and never an option berth handles itself (so the
//! comma-joined data string splits back into the same items), the
//! `mount_setattr` pairs set and clear disjoint bits (apart from the atime
//! field, which the kernel wants cleared whole when one value is set), and
//! a later option overrides an earlier one.
#![no_main]

use berth::rootfs::options::{known, parse, propagation_flag, MountOptions};
use libfuzzer_sys::fuzz_target;

/// Option pairs of `mount(8)`: the first sets the `MS_*` bit, the second
/// clears it.
const PAIRS: &[(&str, &str, libc::c_ulong)] = &[
    ("ro", "rw", libc::MS_RDONLY),
    ("nosuid", "suid", libc::MS_NOSUID),
    ("nodev", "dev", libc::MS_NODEV),
    ("noexec", "exec", libc::MS_NOEXEC),
    ("sync", "async", libc::MS_SYNCHRONOUS),
    ("noatime", "atime", libc::MS_NOATIME),
    ("nodiratime", "diratime", libc::MS_NODIRATIME),
    ("relatime", "norelatime", libc::MS_RELATIME),
    ("strictatime", "nostrictatime", libc::MS_STRICTATIME),
];

fn check_attr_pair(what: &str, set: u64, clr: u64, o: &MountOptions) {
    let atime = libc::MOUNT_ATTR__ATIME;
    assert_eq!(
        set & clr & !atime,
        0,
        "{what}: set {set:#x} & clear {clr:#x}: {o:?}"
    );
    if set & atime != 0 || clr & atime != 0 {
        // mount_setattr(2): the atime field is cleared whole and set to one
        // of its values.
        assert_eq!(clr & atime, atime, "{what}: partial atime clear: {o:?}");
        assert!(
            [
                libc::MOUNT_ATTR_RELATIME,
                libc::MOUNT_ATTR_NOATIME,
                libc::MOUNT_ATTR_STRICTATIME
            ]
            .contains(&(set & atime)),
            "{what}: atime value {:#x}: {o:?}",
            set & atime
        );
    }
}

fuzz_target!(|input: &str| {
    let names = known();
    let opts: Vec<String> = input.split('\n').map(str::to_string).collect();
    for s in &opts {
        let _ = propagation_flag(s);
    }
    let Ok(o) = parse(&opts) else { return };

    assert_eq!(
        o.flags & o.clear,
        0,
        "flags and clear overlap: {opts:?} -> {o:?}"
    );
    assert!(o.bind || !o.recursive, "recursive without bind: {o:?}");
    for item in &o.data {
        assert!(!item.is_empty(), "empty data item: {opts:?}");
        assert!(!item.contains(','), "comma in data item {item:?}");
        assert!(item != "defaults", "defaults taken as data");
        assert!(
            !names.contains(&item.as_str()),
            "option {item:?} taken as data"
        );
    }
    let data = o.data_string();
    if !o.data.is_empty() {
        assert_eq!(
            data.split(',').collect::<Vec<_>>(),
            o.data,
            "data string {data:?}"
        );
    } else {
        assert!(data.is_empty());
    }
    let props = [
        libc::MS_PRIVATE,
        libc::MS_SHARED,
        libc::MS_SLAVE,
        libc::MS_UNBINDABLE,
    ];
    for p in &o.propagation {
        assert!(props.contains(&(p & !libc::MS_REC)), "propagation {p:#x}");
    }
    let (set, clr) = o.attrs();
    check_attr_pair("attrs()", set, clr, &o);
    check_attr_pair("recursive", o.rec_set, o.rec_clr, &o);

    // The last of a pair wins.
    for (on, off, bit) in PAIRS {
        match opts.iter().rev().find(|s| s == on || s == off) {
            Some(s) if s == on => assert_eq!(o.flags & bit, *bit, "{on} last: {opts:?}"),
            Some(_) => {
                assert_eq!(o.flags & bit, 0, "{off} last: {opts:?}");
                assert_eq!(o.clear & bit, *bit, "{off} last: {opts:?}");
            }
            None => assert_eq!((o.flags | o.clear) & bit, 0, "{on} never given: {opts:?}"),
        }
    }
});
