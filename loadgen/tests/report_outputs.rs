//! Reporting: recorders, percentiles, warm-up exclusion, JSON schema, HDR log, SVG, table.

use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde_json::Value;
use tern_loadgen::dist::Rng;
use tern_loadgen::report::{Aggregator, Recorder, Report, RunInfo};
use tern_loadgen::workload::OpKind;

const US: u64 = 1000;

fn info(busy: f64, server_cpu_ns: Option<u64>) -> RunInfo {
    RunInfo {
        target: "127.0.0.1:7000".into(),
        protocol: "tern".into(),
        workload: "ycsb-a".into(),
        threads: 2,
        connections: 8,
        depth: 4,
        rate: None,
        server_cpu_ns,
        loadgen_cpu_ns: 3_000_000,
        loadgen_busy_fraction: busy,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Two measured seconds of a GET/UPDATE mix from two threads, after one warm-up second.
fn sample_report(busy: f64) -> Report {
    let mut agg = Aggregator::new(secs(1.0), true);
    let mut rng = Rng::new(1);
    for second in 1..=3 {
        for _thread in 0..2 {
            let mut rec = Recorder::new();
            for _ in 0..5000 {
                rec.record(OpKind::Get, 20 * US + rng.below(200 * US));
                rec.record(OpKind::Update, 50 * US + rng.below(500 * US));
            }
            rec.record_error(OpKind::Update);
            agg.add(secs(f64::from(second)), &rec);
        }
        agg.tick(secs(f64::from(second)));
    }
    agg.finish(secs(2.0), info(busy, Some(40_000_000)))
}

#[test]
fn merging_recorders_equals_recording_into_one() {
    let mut rng = Rng::new(42);
    let mut parts = [Recorder::new(), Recorder::new(), Recorder::new()];
    let mut whole = Recorder::new();
    for i in 0..30_000 {
        let kind = OpKind::ALL[rng.below(OpKind::COUNT as u64) as usize];
        let latency = rng.below(10_000_000_000);
        parts[i % 3].record(kind, latency);
        whole.record(kind, latency);
        if i % 97 == 0 {
            parts[(i + 1) % 3].record_error(kind);
            whole.record_error(kind);
        }
    }
    let mut merged = Recorder::new();
    for p in &parts {
        merged.merge_from(p);
    }
    assert_eq!(merged.ops(), 30_000);
    assert_eq!(merged.ops(), whole.ops());
    assert_eq!(merged.errors(), whole.errors());
    for kind in OpKind::ALL {
        assert_eq!(merged.histogram(kind), whole.histogram(kind), "{kind:?}");
        assert_eq!(merged.errors_of(kind), whole.errors_of(kind), "{kind:?}");
    }
    merged.clear();
    assert_eq!((merged.ops(), merged.errors()), (0, 0));
}

#[test]
fn percentiles_of_a_known_latency_set() {
    let mut rec = Recorder::new();
    // 1, 2, …, 1000 µs, once each.
    for us in 1..=1000u64 {
        rec.record(OpKind::Get, us * US);
    }
    let mut agg = Aggregator::new(Duration::ZERO, true);
    agg.add(secs(1.0), &rec);
    agg.tick(secs(1.0));
    let report = agg.finish(secs(2.0), info(0.1, None));
    let close = |got: f64, want: f64| (got - want).abs() <= want * 1e-3;
    for stats in [&report.total, &report.per_op[0].1] {
        assert_eq!(stats.ops, 1000);
        assert!(close(stats.ops_per_sec, 500.0), "{}", stats.ops_per_sec);
        assert!(close(stats.avg_us, 500.5), "{}", stats.avg_us);
        assert!(close(stats.p50_us, 500.0), "{}", stats.p50_us);
        assert!(close(stats.p90_us, 900.0), "{}", stats.p90_us);
        assert!(close(stats.p99_us, 990.0), "{}", stats.p99_us);
        assert!(close(stats.p999_us, 999.0), "{}", stats.p999_us);
        assert!(close(stats.max_us, 1000.0), "{}", stats.max_us);
        assert_eq!(stats.errors, 0);
    }
    assert_eq!(report.per_op.len(), 1);
    assert_eq!(report.per_op[0].0, OpKind::Get);
    assert_eq!(report.server_cpu_us_per_op, None);
    // 3 ms of loadgen CPU over 1000 ops.
    assert!(close(report.loadgen_cpu_us_per_op, 3.0));
    assert!(!report.saturated);
}

#[test]
fn warm_up_intervals_are_shown_but_not_counted() {
    let mut agg = Aggregator::new(secs(2.0), true);
    // Ticks jitter around whole seconds; the interval ending at 2.0003 s is warm-up, the
    // one starting at 1.9998 s is not.
    for (end, latency_us) in [(1.0001, 100), (2.0003, 200), (2.9998, 300), (4.0002, 400)] {
        let mut rec = Recorder::new();
        for _ in 0..10 {
            rec.record(OpKind::Get, latency_us * US);
        }
        agg.add(secs(end), &rec);
        agg.tick(secs(end));
    }
    assert!((agg.counted().as_secs_f64() - 1.9999).abs() < 1e-9);
    let report = agg.finish(secs(2.0), info(0.1, None));
    assert_eq!(report.total.ops, 20);
    let h = report.histogram(OpKind::Get);
    assert_eq!(h.count_between(290 * US, 310 * US), 10);
    assert_eq!(h.count_between(390 * US, 410 * US), 10);
    assert!(report.total.p50_us > 250.0);
    let json = report.to_json();
    let warmups: Vec<bool> = json["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["warmup"].as_bool().unwrap())
        .collect();
    assert_eq!(warmups, [true, true, false, false]);
}

#[test]
fn finish_closes_an_interval_left_open() {
    let mut agg = Aggregator::new(Duration::ZERO, true);
    let mut rec = Recorder::new();
    rec.record(OpKind::Set, 5 * US);
    rec.record_error(OpKind::Set);
    agg.add(secs(0.5), &rec);
    let report = agg.finish(secs(0.5), info(0.1, Some(1_000_000)));
    assert_eq!(report.total.ops, 1);
    assert_eq!(report.total.errors, 1);
    assert_eq!(report.per_op[0].1.errors, 1);
    // Server CPU per request, failed ones included: 1 ms / 2.
    assert_eq!(report.server_cpu_us_per_op, Some(500.0));
    assert_eq!(report.to_json()["intervals"].as_array().unwrap().len(), 1);
}

fn assert_number(v: &Value, path: &str) {
    assert!(v.is_number(), "{path} = {v} is not a number");
    assert!(v.as_f64().unwrap().is_finite(), "{path}");
}

fn assert_count(v: &Value, path: &str) {
    assert!(v.is_u64(), "{path} = {v} is not a non-negative integer");
}

fn assert_stats(v: &Value, path: &str) {
    assert_count(&v["ops"], &format!("{path}.ops"));
    assert_count(&v["errors"], &format!("{path}.errors"));
    for key in [
        "ops_per_sec",
        "avg_us",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
    ] {
        assert_number(&v[key], &format!("{path}.{key}"));
    }
    let percentiles = v["percentiles"].as_array().expect("percentiles array");
    assert_eq!(percentiles.first().unwrap()["percentile"], 0.0);
    assert_eq!(percentiles.last().unwrap()["percentile"], 100.0);
    let mut last = 0.0;
    for p in percentiles {
        assert_number(&p["percentile"], path);
        let us = p["us"].as_f64().expect("us");
        assert!(us >= last, "{path}: percentiles not monotonic");
        last = us;
    }
    assert_eq!(last, v["max_us"].as_f64().unwrap());
}

#[test]
fn json_has_every_key_with_its_type() {
    let report = sample_report(0.95);
    let json = report.to_json();
    let top: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "schema_version",
        "tool",
        "info",
        "warmup_secs",
        "measured_secs",
        "saturated",
        "server_cpu_us_per_op",
        "loadgen_cpu_us_per_op",
        "total",
        "per_op",
        "intervals",
    ];
    want.sort_unstable();
    let mut got = top.clone();
    got.sort_unstable();
    assert_eq!(got, want);

    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["tool"], "tern-loadgen");
    let info = &json["info"];
    for key in ["target", "protocol", "workload"] {
        assert!(info[key].is_string(), "info.{key}");
    }
    for key in [
        "threads",
        "connections",
        "depth",
        "loadgen_cpu_ns",
        "server_cpu_ns",
    ] {
        assert_count(&info[key], &format!("info.{key}"));
    }
    assert!(info["rate"].is_null());
    assert_number(&info["loadgen_busy_fraction"], "info.loadgen_busy_fraction");
    assert_eq!(info.as_object().unwrap().len(), 10);

    assert_eq!(json["saturated"], true);
    assert_eq!(json["warmup_secs"], 1.0);
    assert_eq!(json["measured_secs"], 2.0);
    // 40 ms of server CPU over 40000 ops + 4 errors.
    let cpu = json["server_cpu_us_per_op"].as_f64().unwrap();
    assert!((cpu - 40_000.0 / 40_004.0).abs() < 1e-9, "{cpu}");
    assert_number(&json["loadgen_cpu_us_per_op"], "loadgen_cpu_us_per_op");

    assert_stats(&json["total"], "total");
    // 2 counted seconds × 2 threads × 5000 of each type.
    assert_eq!(json["total"]["ops"], 40_000);
    assert_eq!(json["total"]["errors"], 4);
    assert_eq!(json["total"]["ops_per_sec"], 20_000.0);
    let per_op = json["per_op"].as_array().unwrap();
    let names: Vec<&str> = per_op.iter().map(|o| o["op"].as_str().unwrap()).collect();
    assert_eq!(names, ["get", "update"]);
    for (i, op) in per_op.iter().enumerate() {
        assert_stats(op, &format!("per_op[{i}]"));
        assert_eq!(op["ops"], 20_000);
        assert_eq!(op["ops_per_sec"], 10_000.0);
    }
    assert_eq!(per_op[1]["errors"], 4);
    let get_p50 = per_op[0]["p50_us"].as_f64().unwrap();
    assert!((110.0..130.0).contains(&get_p50), "{get_p50}");

    let intervals = json["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 3);
    for (i, interval) in intervals.iter().enumerate() {
        for key in [
            "end_secs",
            "duration_secs",
            "ops_per_sec",
            "p50_us",
            "p99_us",
        ] {
            assert_number(&interval[key], &format!("intervals[{i}].{key}"));
        }
        assert_count(&interval["ops"], "ops");
        assert_count(&interval["errors"], "errors");
        assert_eq!(interval["warmup"], i == 0);
        assert_eq!(interval["ops"], 20_000);
        assert_eq!(interval["ops_per_sec"], 20_000.0);
    }
    // The document survives a text round trip (no NaN silently written as null).
    let text = serde_json::to_string(&json).unwrap();
    assert!(same_json(
        &serde_json::from_str::<Value>(&text).unwrap(),
        &json
    ));
}

/// Equal up to the last bit of floats (serde_json's default float parsing may differ in it).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn json_rate_and_missing_server_cpu() {
    let mut agg = Aggregator::new(Duration::ZERO, true);
    let mut i = info(0.2, None);
    i.rate = Some(50_000.0);
    let json = {
        agg.tick(secs(1.0));
        agg.finish(secs(1.0), i).to_json()
    };
    assert_eq!(json["info"]["rate"], 50_000.0);
    assert!(json["info"]["server_cpu_ns"].is_null());
    assert!(json["server_cpu_us_per_op"].is_null());
    assert_eq!(json["saturated"], false);
    assert_eq!(json["per_op"].as_array().unwrap().len(), 0);
    assert_stats(&json["total"], "total");
}

/// Standard base64 (the HDR log's histogram encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | u32::from(value(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn hdr_log_reads_back_with_hdrhistograms_reader() {
    let report = sample_report(0.5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.hlog");
    report.write_hdr_log(&path).unwrap();
    let text = std::fs::read(&path).unwrap();
    assert!(text.starts_with(b"#[Histogram log format version 1.3]\n"));

    let mut deserializer = Deserializer::new();
    let (mut start_times, mut base_times) = (0, 0);
    let mut intervals = Vec::new();
    for entry in IntervalLogIterator::new(&text) {
        match entry.expect("parses") {
            LogEntry::StartTime(_) => start_times += 1,
            LogEntry::BaseTime(_) => base_times += 1,
            LogEntry::Interval(ilh) => {
                let bytes = base64_decode(ilh.encoded_histogram());
                let h: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
                assert!((ilh.max() - h.max() as f64 / 1e6).abs() < 1e-3);
                intervals.push((
                    ilh.tag().map(|t| t.as_str().to_string()),
                    ilh.start_timestamp(),
                    ilh.duration(),
                    h,
                ));
            }
        }
    }
    assert_eq!((start_times, base_times), (1, 1));
    // Two counted intervals (the first second is warm-up) × two operation types.
    let tags: Vec<&str> = intervals.iter().map(|i| i.0.as_deref().unwrap()).collect();
    assert_eq!(tags, ["get", "update", "get", "update"]);
    assert_eq!(intervals[0].1, Duration::from_secs(1));
    assert_eq!(intervals[2].1, Duration::from_secs(2));
    assert!(intervals.iter().all(|i| i.2 == Duration::from_secs(1)));
    // The intervals add up to the report's totals.
    for (kind, tag) in [(OpKind::Get, "get"), (OpKind::Update, "update")] {
        let mut sum = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in intervals.iter().filter(|i| i.0.as_deref() == Some(tag)) {
            assert_eq!(i.3.len(), 10_000);
            sum.add(&i.3).unwrap();
        }
        assert_eq!(&sum, report.histogram(kind));
    }
}

/// Checks that every element opened is closed in order; returns the element names seen.
fn check_xml_nesting(svg: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("unterminated tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if tag.starts_with('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            stack.push(name.clone());
        }
        names.push(name);
        // Text between tags must not hold raw markup characters.
        let text_end = rest[close + 1..]
            .find('<')
            .map_or(rest.len(), |i| i + close + 1);
        assert!(!rest[close + 1..text_end].contains('>'), "raw '>' in text");
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    names
}

#[test]
fn svg_is_well_formed_with_one_path_per_op_type() {
    let report = sample_report(0.5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.svg");
    report.write_svg(&path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    let names = check_xml_nesting(&svg);
    assert_eq!(names.iter().filter(|n| *n == "path").count(), 2);
    assert!(svg.contains(">GET<") && svg.contains(">UPDATE<"));
    assert!(svg.contains(">99.9%<"), "x axis in nines");
}

#[test]
fn table_lists_each_op_type_totals_and_warnings() {
    let mut out = Vec::new();
    sample_report(0.95).print_table(&mut out).unwrap();
    let table = String::from_utf8(out).unwrap();
    for needle in [
        "ycsb-a against 127.0.0.1:7000 (tern)",
        "closed loop",
        "Ops/sec",
        "p99.9(us)",
        "\nGET ",
        "\nUPDATE ",
        "\nTotals ",
        "server CPU:  1.00 us/op",
        "WARNING: the load generator was saturated",
        "WARNING: 4 operations failed",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    let totals = table.lines().find(|l| l.starts_with("Totals")).unwrap();
    let cols: Vec<&str> = totals.split_whitespace().collect();
    assert_eq!(cols[1], "20000.00", "{totals}");
    assert_eq!(cols.last(), Some(&"4"));

    let mut calm = Vec::new();
    sample_report(0.5).print_table(&mut calm).unwrap();
    assert!(!String::from_utf8(calm).unwrap().contains("saturated"));
}
