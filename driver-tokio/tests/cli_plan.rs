//! `parti plan --file` and `parti explain --file` refuse a bad assignment or weights file with
//! one `error:` line (exit 2) naming the entry and what is allowed, cut long IDs in messages,
//! read `x.y` as the core reads it, list `-v` partitions unambiguously, and with `--json`
//! print one document with the fields docs/plan-json.md lists.

mod cli_support;
use cli_support::{run, text};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A temporary folder holding files for one test.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().expect("temp dir"))
    }

    /// Writes `text` to `name` and returns its path as a string.
    fn write(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.0.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.to_str().expect("utf-8 path").to_string()
    }
}

/// Runs parti expecting a usage error: exit 2 and one `error:` line holding every needle;
/// returns the line.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let out = run(args, WAIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    stderr
}

/// `parti plan --file <assignment> --add 1` must be refused with every needle.
fn plan_refuses(assignment: &str, needles: &[&str]) -> String {
    let files = Files::new();
    let file = files.write("a.json", assignment);
    refused(&["plan", "--file", &file, "--add", "1"], needles)
}

/// Runs parti expecting success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args, WAIT);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

#[test]
fn a_partition_under_two_workers_or_twice_under_one_is_refused() {
    plan_refuses(
        r#"{"0": ["a", "b"], "1": ["c", "a"]}"#,
        &["partition a is listed under worker 0 and worker 1"],
    );
    plan_refuses(
        r#"{"0": ["a", "b", "a"], "1": ["c"]}"#,
        &["worker 0 lists partition a twice"],
    );
    plan_refuses(
        r#"{"0": {"partitions": ["a"]}, "1": {"capacity": 2, "partitions": ["a"]}}"#,
        &["listed under worker 0 and worker 1"],
    );
}

#[test]
fn an_unknown_key_in_a_worker_entry_is_refused_naming_the_allowed_ones() {
    plan_refuses(
        r#"{"0": ["a"], "1": {"capcity": 2, "partitions": ["b"]}}"#,
        &["unknown field `capcity`, expected `capacity` or `partitions`"],
    );
}

#[test]
fn a_key_given_twice_is_refused_in_the_assignment_and_the_weights_file() {
    plan_refuses(
        r#"{"0": ["a"], "1": ["b"], "0": ["c"]}"#,
        &["key \"0\" is given twice"],
    );
    plan_refuses(
        r#"{"0": {"capacity": 1, "partitions": ["a"], "capacity": 3}}"#,
        &["duplicate field `capacity`"],
    );
    let files = Files::new();
    let file = files.write("a.json", r#"{"0": ["a", "b"], "1": ["c"]}"#);
    let weights = files.write("w.json", r#"{"a": 200, "b": 100, "a": 1}"#);
    refused(
        &["plan", "--file", &file, "--weights", &weights, "--add", "1"],
        &["weights file", "key \"a\" is given twice"],
    );
}

#[test]
fn capacity_and_weights_out_of_range_name_the_field_and_the_range() {
    let range = "allowed a whole number 1..=4294967295";
    for (capacity, why) in [
        ("0", "is out of range"),
        ("-1", "is out of range"),
        ("4294967296", "is out of range"),
        ("1.5", "is not a whole number"),
        // null is not the same as leaving the key out (capacity 1)
        ("null", "is not a number"),
        ("\"2\"", "is not a number"),
    ] {
        plan_refuses(
            &format!(r#"{{"0": ["a"], "1": {{"capacity": {capacity}, "partitions": ["b"]}}}}"#),
            &[&format!("worker 1: capacity {capacity} {why}; {range}")],
        );
    }
    // a whole number written as a float is that number
    let files = Files::new();
    let file = files.write(
        "a.json",
        r#"{"0": ["a"], "1": {"capacity": 2.0, "partitions": ["b"]}}"#,
    );
    ok(&["plan", "--file", &file, "--add", "1"]);
    let file = files.write("a.json", r#"{"0": ["a", "b"], "1": ["c"]}"#);
    for (weight, why) in [
        ("0", "is out of range"),
        ("-5", "is out of range"),
        ("2.5", "is not a whole number"),
        ("\"heavy\"", "is not a number"),
        ("null", "is not a number"),
    ] {
        let weights = files.write("w.json", &format!(r#"{{"a": {weight}}}"#));
        refused(
            &["plan", "--file", &file, "--weights", &weights, "--add", "1"],
            &[&format!(
                "weight of a ({weight}) {why}; allowed a whole number 1..=18446744073709551615"
            )],
        );
    }
}

/// A byte-order mark before the JSON (some editors write one) is not an error, and a worker
/// given twice to `--remove` is named as such.
#[test]
fn a_byte_order_mark_is_skipped_and_a_worker_removed_twice_is_named() {
    let files = Files::new();
    let file = files.write("a.json", "\u{feff}{\"0\": [\"a\"], \"1\": [\"b\"]}");
    ok(&["plan", "--file", &file, "--add", "1"]);
    refused(
        &["plan", "--file", &file, "--remove", "0,0"],
        &["--remove 0: worker 0 is given twice"],
    );
}

#[test]
fn weights_whose_total_overflows_are_refused_naming_the_weights_file() {
    let files = Files::new();
    let file = files.write("a.json", r#"{"0": ["a", "b"], "1": ["c"]}"#);
    let weights = files.write("w.json", r#"{"a": 18446744073709551615}"#);
    refused(
        &["plan", "--file", &file, "--weights", &weights, "--add", "1"],
        &["weights file", "total weight overflows"],
    );
}

#[test]
fn worker_ids_out_of_range_are_not_called_not_a_number() {
    for key in ["4294967296", "-1", "123456789012345678901234567890"] {
        let line = plan_refuses(
            &format!(r#"{{"{key}": ["a"]}}"#),
            &[
                &format!("worker ID {key} is out of range"),
                "allowed a whole number 0..=4294967295",
            ],
        );
        assert!(!line.contains("not a number"), "{line}");
    }
    plan_refuses(r#"{"w1": ["a"]}"#, &["worker ID \"w1\" is not a number"]);
    plan_refuses(
        r#"{"7": ["a"], "007": ["b"]}"#,
        &["worker ID \"007\": write it as 7"],
    );
}

#[test]
fn a_huge_partition_id_is_cut_in_the_message() {
    let huge = "p".repeat(100_000);
    let line = plan_refuses(&format!(r#"{{"0": ["{huge}"]}}"#), &["…", "bytes long"]);
    assert!(line.len() < 600, "{} bytes: {}", line.len(), &line[..600]);
    let files = Files::new();
    let file = files.write("a.json", r#"{"0": ["a"], "1": ["b"]}"#);
    let line = refused(
        &["explain", "--file", &file, &huge],
        &["is not a partition ID", "…"],
    );
    assert!(line.len() < 600, "{} bytes", line.len());
    let line = refused(
        &[
            "explain",
            "--file",
            &file,
            &format!("{}.x", "q".repeat(200)),
        ],
        &["is not in the committed assignment", "…"],
    );
    assert!(line.len() < 600, "{} bytes", line.len());
    // `parti pin` words it with the same helper (before it connects anywhere).
    let line = refused(
        &[
            "pin",
            "--nats",
            "nats://127.0.0.1:1",
            &format!("{huge}*"),
            "1",
        ],
        &["is not a partition ID", "…"],
    );
    assert!(line.len() < 600, "{} bytes", line.len());
}

#[test]
fn dotted_ids_are_read_as_the_core_reads_them() {
    let files = Files::new();
    let file = files.write("a.json", r#"{"0": ["x.y", "x.z"], "1": ["w"]}"#);
    let out = ok(&["explain", "--file", &file, "x.y"]);
    assert!(out.contains("partition   x.y"), "{out}");
    plan_refuses(
        r#"{"0": ["x..y"]}"#,
        &["invalid partition \"x..y\"", "key 1 is empty"],
    );
}

/// Expands a `-v` list (`a-1..a-3,b`) into its IDs: a range's ends share the text before
/// their trailing numbers.
fn expand(list: &str) -> Vec<String> {
    if list == "-" {
        return Vec::new();
    }
    let split = |id: &str| {
        let digits = id.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (head, n) = id.split_at(id.len() - digits);
        (
            head.to_string(),
            n.parse::<u32>().expect("a numbered range end"),
        )
    };
    let mut out = Vec::new();
    for item in list.split(',') {
        match item.split_once("..") {
            Some((a, b)) => {
                let ((head, from), (head_b, to)) = (split(a), split(b));
                assert_eq!(head, head_b, "{item}");
                out.extend((from..=to).map(|n| format!("{head}{n}")));
            }
            None => out.push(item.to_string()),
        }
    }
    out.sort();
    out
}

#[test]
fn verbose_lists_read_one_way_when_ids_hold_dashes() {
    let files = Files::new();
    // a-1, a-2, a-3 (a range when listed together) and the one ID a-1-a-3 on worker 1, which
    // is removed: worker 0 gains them all.
    let ids = ["a-1", "a-2", "a-3", "a-1-a-3", "a-7"];
    let file = files.write(
        "a.json",
        &serde_json::json!({"0": ["b"], "1": ids}).to_string(),
    );
    let args = ["plan", "--file", &file, "--remove", "1"];
    let out = ok(&[&args[..], &["-v"]].concat());
    assert!(out.contains("+[a-1..a-3,a-7,a-1-a-3] -[-]"), "{out}");
    let doc: serde_json::Value =
        serde_json::from_str(&ok(&[&args[..], &["--json"]].concat())).unwrap();
    let mut checked = 0;
    let mut lines = out.lines();
    for w in doc["workers"].as_array().unwrap() {
        let sorted = |v: &serde_json::Value| {
            let mut v: Vec<String> = serde_json::from_value(v.clone()).unwrap();
            v.sort();
            v
        };
        let (gained, lost) = (sorted(&w["gained"]), sorted(&w["lost"]));
        if gained.is_empty() && lost.is_empty() {
            continue;
        }
        let id = w["id"].to_string();
        lines
            .by_ref()
            .find(|l| l.trim_start().split(' ').next() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no row for worker {id}:\n{out}"));
        let list = lines.next().expect("the list line").trim();
        let (plus, minus) = list
            .strip_prefix("+[")
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|l| l.split_once("] -["))
            .unwrap_or_else(|| panic!("not a +[..] -[..] line: {list}"));
        assert_eq!(expand(plus), gained, "worker {id}: {list}");
        assert_eq!(expand(minus), lost, "worker {id}: {list}");
        checked += 1;
    }
    assert!(checked >= 2, "{out}");
    assert!(out.contains(".."), "a range is listed: {out}");
    let help = ok(&["plan", "--help"]);
    assert!(
        help.contains("`p0..p3` is p0, p1") && help.contains("more partitions"),
        "{help}"
    );
}

#[test]
fn plan_json_is_one_document_with_the_documented_fields() {
    let files = Files::new();
    let file = files.write(
        "a.json",
        r#"{"0": ["a", "b", "c"], "1": ["d", "e", "f"], "2": {"capacity": 1, "partitions": ["g", "h", "i"]}}"#,
    );
    let weights = files.write("w.json", r#"{"a": 300}"#);
    let out = ok(&[
        "plan",
        "--file",
        &file,
        "--weights",
        &weights,
        "--remove",
        "2",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["v"], 1);
    assert_eq!(doc["command"], "plan");
    assert!(doc["source"].as_str().unwrap().contains("a.json"), "{doc}");
    assert_eq!(doc["strategy"], "balanced");
    assert_eq!(
        doc["change"],
        serde_json::json!({"kind": "remove", "workers": [2]})
    );
    assert_eq!(doc["partitions"], 9);
    assert_eq!(doc["total_weight"], 300 + 8 * 100);
    assert_eq!(doc["weighted"], true);
    assert_eq!(doc["moved"], 3);
    assert!(doc["moved_weight"].as_u64().unwrap() >= 300, "{doc}");
    assert!(doc["even_split_moves"].is_u64());
    for side in ["before", "after"] {
        for f in ["max_over_mean", "min_over_mean"] {
            assert!(doc["balance"][side][f].is_f64(), "{side}.{f}: {doc}");
        }
    }
    assert!(doc["notes"].is_array());
    let workers = doc["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3);
    let removed = &workers[2];
    assert_eq!(removed["id"], 2);
    assert_eq!(removed["status"], "removed");
    assert_eq!(removed["capacity"], 1);
    assert_eq!(
        (removed["before"].as_u64(), removed["after"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(removed["lost"], serde_json::json!(["g", "h", "i"]));
    assert_eq!(removed["gained"], serde_json::json!([]));
    let gained: usize = workers[..2]
        .iter()
        .map(|w| w["gained"].as_array().unwrap().len())
        .sum();
    assert_eq!(gained, 3, "{doc}");
    for key in doc.as_object().unwrap().keys() {
        let documented = include_str!("../../docs/plan-json.md");
        assert!(
            documented.contains(&format!("`{key}`")),
            "{key} is not in docs/plan-json.md"
        );
    }
}

#[test]
fn explain_json_is_one_document_with_the_documented_fields() {
    let files = Files::new();
    let file = files.write("a.json", r#"{"0": ["a", "b"], "1": ["c", "d"]}"#);
    let out = ok(&["explain", "--file", &file, "c", "--add", "1", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["v"], 1);
    assert_eq!(doc["command"], "explain");
    assert_eq!(doc["partition"], "c");
    assert_eq!(
        doc["change"],
        serde_json::json!({"kind": "add", "workers": [2]})
    );
    assert_eq!(doc["now"], 1);
    assert!(
        [0, 1, 2].contains(&doc["planned"].as_u64().unwrap()),
        "{doc}"
    );
    assert!(!doc["reason"].as_str().unwrap().is_empty());
    assert!(doc["strategy"].is_string() && doc["source"].is_string() && doc["notes"].is_array());
    let documented = include_str!("../../docs/plan-json.md");
    for key in doc.as_object().unwrap().keys() {
        assert!(
            documented.contains(&format!("`{key}`")),
            "{key} is not in docs/plan-json.md"
        );
    }
    // An error is still one line on stderr and nothing on stdout.
    refused(
        &["explain", "--file", &file, "zz", "--json"],
        &["partition zz is not in"],
    );
}
