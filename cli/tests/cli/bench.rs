//! `fieldsync bench`: runs end to end on small sizes and reports its figures.

use crate::support::*;

#[test]
fn bench_reports_every_figure() {
    let out = ok_json(&["bench", "--sections", "8", "--edits", "8"]);
    let figures = out["figures"].as_array().unwrap();
    let names: Vec<&str> = figures.iter().map(|f| f["name"].as_str().unwrap()).collect();
    for part in
        ["local edit", "merge of a section's concurrent edits", "bytes on the wire", "open a store of 8 sections"]
    {
        assert!(names.iter().any(|n| n.contains(part)), "no `{part}` figure in {names:?}");
    }
    assert!(figures.iter().all(|f| f["value"].as_f64().is_some_and(|v| v >= 0.0) && f["unit"].is_string()));
    let records = figures.iter().find(|f| f["name"] == "conflict records after the merges").unwrap();
    assert_eq!(records["value"], 8.0, "one contest per section both replicas edited");

    let text = ok(&["bench", "--sections", "3", "--edits", "3"]).stdout;
    assert!(text.contains("local edit → validated view, durable (p50)"), "{text}");
    assert_eq!(run(&["bench", "--sections", "0"]).code, 2);
}
