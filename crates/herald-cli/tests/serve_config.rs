//! `herald serve`'s configuration errors, through the real binary: each
//! names the file or variable at fault and what was expected, and the
//! server does not start.

mod support;

use support::{Herald, Stream, TIMEOUT, TempFile};

/// Runs `herald serve <args>` (on a free loopback port unless `args` says
/// otherwise) and returns its stderr, asserting that it refused to start.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut argv = vec!["serve", "--listen", "127.0.0.1:0", "--threads", "1"];
    argv.extend_from_slice(args);
    let mut herald = Herald::start(&argv, env);
    let status = herald.exit(TIMEOUT);
    let stderr = herald.lines(Stream::Stderr).join("\n");
    assert!(
        status.is_some_and(|s| !s.success()),
        "herald serve {args:?} with {env:?} did not fail ({status:?}):\n{stderr}"
    );
    stderr
}

#[test]
fn a_missing_config_file_is_named() {
    let e = refused(&["--config", "/nonexistent.toml"], &[]);
    assert!(
        e.contains("cannot read the configuration file /nonexistent.toml: "),
        "{e}"
    );
}

#[test]
fn bad_toml_names_the_file_and_the_line() {
    let file = TempFile::new("bad.toml", "demos = true\nbogus = 1\n");
    let e = refused(&["--config", file.path()], &[]);
    assert!(e.contains(file.path()), "{e}");
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("unknown field `bogus`"), "{e}");
}

#[test]
fn a_misspelled_variable_stops_startup() {
    let e = refused(&[], &[("HERALD_TOKEN_SECERT", "not-so-secret")]);
    assert!(e.contains("unknown variable HERALD_TOKEN_SECERT"), "{e}");
    assert!(e.contains("did you mean HERALD_TOKEN_SECRET?"), "{e}");
    assert!(!e.contains("not-so-secret"), "{e}");
}

#[test]
fn a_bad_value_names_the_variable_and_the_format() {
    let e = refused(&[], &[("HERALD_LISTEN", "8080")]);
    assert!(e.contains("HERALD_LISTEN=8080"), "{e}");
    assert!(e.contains("expected host:port, like 127.0.0.1:8080"), "{e}");
}

#[test]
fn variables_apply_and_the_tools_own_are_passed_over() {
    let mut herald = Herald::start(
        &["serve", "--threads", "1"],
        &[
            ("HERALD_LISTEN", "127.0.0.1:0"),
            ("HERALD_TOKEN_SECRET", "0123456789abcdef0123456789abcdef"),
            ("HERALD_LOG", "warn"),
            ("HERALD_FUZZ_SECONDS", "5"),
        ],
    );
    let banner = herald
        .wait_for("herald serve: http://", TIMEOUT)
        .unwrap_or_else(|| panic!("did not start: {}", herald.text()));
    assert!(banner.contains("127.0.0.1:"), "{banner}");
    assert!(banner.contains("tokens required"), "{banner}");
}

#[test]
fn an_unknown_log_level_is_reported() {
    let mut herald = Herald::start(
        &["serve", "--listen", "127.0.0.1:0", "--threads", "1"],
        &[("HERALD_LOG", "verbose")],
    );
    herald.serve_addr();
    assert!(
        herald
            .text()
            .contains("HERALD_LOG=verbose is not a level (off, error, warn, info, debug, trace)"),
        "{}",
        herald.text()
    );
}

#[cfg(unix)]
#[test]
fn variables_that_are_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let argv = ["serve", "--listen", "127.0.0.1:0", "--threads", "1"];
    // Another program's variable is none of our business: no panic.
    let not_utf8 = OsStr::from_bytes(b"\xff");
    let mut herald = Herald::start_os(&argv, &[(OsStr::new("OTHER_PROGRAM"), not_utf8)]);
    herald.serve_addr();
    drop(herald);
    // Ours is named.
    let mut herald = Herald::start_os(&argv, &[(OsStr::new("HERALD_LISTEN"), not_utf8)]);
    let status = herald.exit(TIMEOUT);
    assert!(status.is_some_and(|s| !s.success()), "{}", herald.text());
    assert!(
        herald
            .text()
            .contains("HERALD_LISTEN: the value is not valid UTF-8"),
        "{}",
        herald.text()
    );
}
