//! `scripts/generar-compose.sh` is the single source of truth for the Compose
//! layout: `docker-compose-dev.yaml` must be its output for 5 clients, and it
//! must reject bad arguments. Needs `bash` and `python3` (the script runs
//! scripts/generar_compose.py), not Docker.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use support::{TempDir, repo};

fn generate(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/generar-compose.sh"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run bash scripts/generar-compose.sh")
}

/// Runs the generator for `n` clients and returns the file it wrote.
fn generated(n: &str) -> String {
    let tmp = TempDir::new(&format!("compose-{n}"));
    let out = tmp.0.join("compose.yaml");
    let run = generate(&[out.to_str().unwrap(), n]);
    assert!(
        run.status.success(),
        "generar-compose.sh {n} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    fs::read_to_string(&out).expect("read generated compose file")
}

fn count_lines(text: &str, pred: impl Fn(&str) -> bool) -> usize {
    text.lines().filter(|l| pred(l)).count()
}

/// Client service names (`  clientN:` at service indentation), in order.
fn client_services(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("  client")?.strip_suffix(':').map(str::to_owned))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .map(|n| format!("client{n}"))
        .collect()
}

/// The checks every generated file must pass, for `n` clients.
fn assert_valid_layout(text: &str, n: usize) {
    assert!(text.contains("\nname: tp0\n"), "project name tp0");
    assert!(text.contains("\nservices:\n  server:\n"), "server service");
    assert!(text.contains("    container_name: server\n"));
    assert!(text.contains(&format!("      - SERVER_AGENCIES={n}\n")), "SERVER_AGENCIES={n}");
    assert!(text.contains("  netcat:\n") && text.contains("      - netcat\n"), "netcat profile");
    assert!(text.contains("\nnetworks:\n  testing_net:\n    driver: bridge\n"));
    assert!(text.contains("\nvolumes:\n  server-data:\n"));
    assert!(!text.contains('\t'), "YAML must not contain tabs");
    // The server reads its secret from a bind mount; each client gets
    // only its own key.
    assert!(text.contains("      - SERVER_SECRET_FILE=/run/secrets/server-secret\n"));
    assert!(text.contains(
        "        source: ./.data/secret\n        target: /run/secrets/server-secret\n        read_only: true\n"
    ));
    assert_eq!(count_lines(text, |l| l.contains(".data/secret")), 1);
    assert!(!text.contains("SERVER_SECRET="), "no secret in the compose file");
    assert!(!text.contains("CLI_KEY="), "no key in the compose file");

    let expected: Vec<String> = (1..=n).map(|i| format!("client{i}")).collect();
    assert_eq!(client_services(text), expected, "client services in order");
    for i in 1..=n {
        assert!(text.contains(&format!("    container_name: client{i}\n")));
        assert!(text.contains(&format!("      - CLI_ID={i}\n")));
        assert!(text.contains(&format!("        source: ./.data/agency-{i}.csv\n")));
        assert!(text.contains(&format!(
            "      - CLI_ID={i}\n    # CLI_KEY: this agency's key and no other's (scripts/docker-keys.sh).\n    # Not required, so that `compose config` and `down` work before it\n    # exists; without it the client stops at start naming the missing key.\n    env_file:\n      - path: ./.data/keys/agency-{i}.env\n        required: false\n"
        )));
    }
    assert_eq!(count_lines(text, |l| l.starts_with("    container_name: ")), n + 2);
    assert_eq!(count_lines(text, |l| l == "      - testing_net"), n + 2);
    assert_eq!(count_lines(text, |l| l.starts_with("      - CLI_ID=")), n);
    assert_eq!(count_lines(text, |l| l.contains("/.data/keys/")), n);
}

#[test]
fn dev_compose_file_is_the_generator_output_for_five_clients() {
    let committed = fs::read_to_string(repo().join("docker-compose-dev.yaml"))
        .expect("read docker-compose-dev.yaml");
    let fresh = generated("5");
    assert!(
        fresh == committed,
        "docker-compose-dev.yaml differs from `scripts/generar-compose.sh - 5`; \
         regenerate it with `make compose N=5`"
    );
    assert_valid_layout(&fresh, 5);
}

#[test]
fn output_is_deterministic_and_stdout_mode_matches_the_file() {
    let a = generated("7");
    assert_eq!(a, generated("7"));
    let stdout = generate(&["-", "7"]);
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8(stdout.stdout).unwrap(), a);
}

#[test]
fn zero_clients_is_just_the_server() {
    let text = generated("0");
    assert_valid_layout(&text, 0);
    assert!(!text.contains("depends_on"), "no client, no depends_on");
}

#[test]
fn one_hundred_clients() {
    let text = generated("100");
    assert_valid_layout(&text, 100);
}

#[test]
fn bad_arguments_print_usage_and_fail() {
    let tmp = TempDir::new("compose-bad-args");
    let out = tmp.0.join("compose.yaml");
    let out = out.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[out, "-1"],
        &[out, "101"],
        &[out, "abc"],
        &[out, ""],
        &[out, "1.5"],
        &[out, "1000"],
        &[out],
        &[],
        &[out, "5", "extra"],
        &["", "5"],
    ];
    for args in cases {
        let run = generate(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} must fail");
        assert!(stderr.contains("usage:"), "{args:?}: usage on stderr, got {stderr:?}");
        assert!(run.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(!Path::new(out).exists(), "{args:?}: no output file");
    }
}

#[test]
fn help_goes_to_stdout_and_succeeds() {
    let run = generate(&["--help"]);
    assert!(run.status.success());
    assert!(String::from_utf8_lossy(&run.stdout).contains("usage:"));
}

#[test]
fn missing_output_directory_fails_without_writing() {
    let tmp = TempDir::new("compose-baddir");
    let out = tmp.0.join("no-such-dir/compose.yaml");
    let run = generate(&[out.to_str().unwrap(), "3"]);
    assert!(!run.status.success());
    assert!(!out.exists());
}

#[test]
fn servers_over_postgres_spread_the_agencies_with_failover_lists() {
    let tmp = TempDir::new("compose-servers");
    let out = tmp.0.join("compose.yaml");
    let run = generate(&[out.to_str().unwrap(), "5", "--servers", "3"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let text = fs::read_to_string(&out).expect("read generated compose file");
    assert!(text.contains("\nservices:\n  postgres:\n"), "a database service");
    assert!(text.contains("    image: lottery-postgres:latest\n"));
    assert!(text.contains("        condition: service_healthy\n"));
    assert!(text.contains("\nvolumes:\n  postgres-data:\n"));
    assert!(!text.contains("server-data"), "servers keep nothing");
    for s in 1..=3 {
        assert!(text.contains(&format!("\n  server{s}:\n    container_name: server{s}\n")));
    }
    assert_eq!(count_lines(&text, |l| l == "      - STORAGE_BACKEND=postgres"), 3);
    assert_eq!(client_services(&text).len(), 5);
    // Agency N starts on server ((N-1) mod 3)+1, then the others in turn.
    for (agency, list) in [
        (1, "server1:12345,server2:12345,server3:12345"),
        (2, "server2:12345,server3:12345,server1:12345"),
        (3, "server3:12345,server1:12345,server2:12345"),
        (4, "server1:12345,server2:12345,server3:12345"),
    ] {
        let service = text.split(&format!("\n  client{agency}:\n")).nth(1).expect("client service");
        let service = service.split("\n\n").next().unwrap_or(service);
        assert!(
            service.contains(&format!("      - CLI_SERVER_ADDRESS={list}\n")),
            "agency {agency}: {service}"
        );
    }
    for bad in ["0", "11", "x"] {
        let run = generate(&[out.to_str().unwrap(), "5", "--servers", bad]);
        assert!(!run.status.success(), "--servers {bad} must fail");
    }
}

#[test]
fn ha_puts_the_servers_over_pg_auto_failover() {
    let tmp = TempDir::new("compose-ha");
    let out = tmp.0.join("compose.yaml");
    let run = generate(&[out.to_str().unwrap(), "5", "--servers", "3", "--ha"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let text = fs::read_to_string(&out).expect("read generated compose file");
    for (name, role) in [("monitor", "monitor"), ("postgres1", "node"), ("postgres2", "node")] {
        let service =
            text.split(&format!("\n  {name}:\n")).nth(1).expect("a pg_auto_failover service");
        let service = service.split("\n\n").next().unwrap_or(service);
        assert!(service.contains(&format!("    hostname: {name}\n")), "{name}: {service}");
        assert!(service.contains("    image: lottery-pgaf:latest\n"), "{name}");
        assert!(service.contains(&format!("    command: [\"{role}\"]\n")), "{name}");
        assert!(service.contains(&format!("        source: {name}-data\n")), "{name}");
    }
    assert!(text.contains("\nvolumes:\n  monitor-data:\n  postgres1-data:\n  postgres2-data:\n"));
    assert!(!text.contains("lottery-postgres"), "no single database");
    let url = "postgresql://lottery:lottery@postgres1:5432,postgres2:5432/lottery?target_session_attrs=read-write";
    assert_eq!(count_lines(&text, |l| l == format!("      - STORAGE_URL={url}")), 3);
    assert_eq!(count_lines(&text, |l| l == "      - STORAGE_WAIT=120s"), 3);
    assert_eq!(client_services(&text).len(), 5);
    // The order of the flags does not matter; --ha alone is refused.
    let stdout = generate(&["-", "5", "--ha", "--servers", "3"]);
    assert_eq!(String::from_utf8(stdout.stdout).unwrap(), text);
    let run = generate(&["-", "5", "--ha"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--ha needs --servers K"));
}
