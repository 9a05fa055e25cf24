//! `config.json` as `berth create` reads it: arbitrary bytes through the OCI
//! runtime spec parser, then `berth::config::validate`, which must answer
//! every parsed spec with `Ok` or an error, never a panic (it runs before
//! anything exists on the host).
//!
//! A spec that validates also goes through the other host-free steps of
//! `create` (cgroup path, namespace plan, capability sets, time offsets),
//! and must survive the JSON round trip that berth's `state.json` (which
//! embeds the spec) relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    if berth::config::validate(&spec).is_err() {
        return;
    }
    let _ = berth::cgroups::cgroup_path(&spec, "fuzz", false);
    let _ = berth::namespaces::Plan::from_spec(&spec);
    let process = berth::process::spec_process(&spec);
    let _ = berth::process::caps::plan(process.capabilities().as_ref());
    let _ = berth::process::spawn::time_offsets(&spec);

    let again = serde_json::to_vec(&spec).expect("a parsed spec serialises");
    let back: Spec = serde_json::from_slice(&again).expect("a serialised spec parses back");
    berth::config::validate(&back).expect("a valid spec is still valid after a round trip");
});
