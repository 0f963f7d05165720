//! dist/k8s/: the manifests parse as YAML (PyYAML, through python3: a real
//! parser, and no Rust YAML crate to carry) and hold what a draining echod
//! needs: probes, a preStop pause, a grace period above the preStop pause
//! plus `--shutdown-timeout`, a memory limit above `--max-memory` plus
//! overhead, a Service and a PodDisruptionBudget.

use std::process::Command;
use std::time::Duration;

use crate::common;
use serde_json::Value;

/// The manifests, each turned into JSON by PyYAML (`safe_load_all`).
fn load(file: &str) -> Option<Vec<Value>> {
    let path = format!("{}/dist/k8s/{file}", env!("CARGO_MANIFEST_DIR"));
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  print(json.dumps(docs))";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &path]);
    let out = common::run_bounded(&mut cmd, Some(Vec::new()), Duration::from_secs(20));
    if out.stderr.contains("No module named 'yaml'") {
        if std::env::var_os("CI").is_some() {
            panic!("PyYAML is required in CI: install python3-yaml");
        }
        eprintln!("SKIPPED: python3 has no yaml module; install python3-yaml to run this test");
        return None;
    }
    assert!(
        out.status.success(),
        "{file} is not well-formed YAML:\n{}",
        out.stderr
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON from python3"))
}

/// Bytes in a Kubernetes quantity or an echod size (`384Mi`, `256MiB`, `1G`).
fn bytes(q: &str) -> u64 {
    let q = q.trim_end_matches('B');
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("quantity {q}"));
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("unit {other} in {q}"),
    }
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [Value], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[i + 1].as_str().expect("a string argument")
}

#[test]
fn k8s_manifests_parse_and_leave_room_to_drain() {
    if !common::require_tool_from("python3", "python3 and python3-yaml") {
        return;
    }
    let Some(deployment) = load("deployment.yaml") else {
        return;
    };
    assert_eq!(deployment.len(), 1);
    let d = &deployment[0];
    assert_eq!(d["kind"], "Deployment");
    let labels = &d["spec"]["selector"]["matchLabels"];
    assert_eq!(&d["spec"]["template"]["metadata"]["labels"], labels);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = c["args"].as_array().expect("args");

    for probe in ["readinessProbe", "livenessProbe"] {
        assert!(c[probe].is_object(), "no {probe}");
    }
    let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    assert!(
        pause >= 2,
        "preStop pause {pause}s: too short for endpoints to drop the pod"
    );
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let shutdown: u64 = flag(args, "--shutdown-timeout").parse().expect("seconds");
    assert!(
        grace > pause + shutdown,
        "grace {grace}s must exceed preStop {pause}s + --shutdown-timeout {shutdown}s"
    );

    let limit = bytes(
        c["resources"]["limits"]["memory"]
            .as_str()
            .expect("memory limit"),
    );
    let budget = bytes(flag(args, "--max-memory"));
    let workers: u64 = flag(args, "--workers").parse().expect("workers");
    // docs/OPERATIONS.md: per worker a 256 KiB read buffer and up to 16 MiB
    // of pooled chunks in a burst; plus the binary and its stacks.
    let overhead = workers * (16 << 20) + (32 << 20);
    assert!(
        limit >= budget + overhead,
        "memory limit {limit} < --max-memory {budget} + overhead {overhead}"
    );

    let service = load("service.yaml").expect("parsed above");
    assert_eq!(service[0]["kind"], "Service");
    assert_eq!(&service[0]["spec"]["selector"], labels);
    let pdb = load("pdb.yaml").expect("parsed above");
    assert_eq!(pdb[0]["kind"], "PodDisruptionBudget");
    assert_eq!(&pdb[0]["spec"]["selector"]["matchLabels"], labels);
    assert!(
        pdb[0]["spec"]["maxUnavailable"].is_number() || pdb[0]["spec"]["minAvailable"].is_number()
    );
}
