//! Keepalive, idle and close timers, driven by injected `Instant`s: what
//! `poll_timeout` asks for, and what `handle_timeout` does when it fires.

mod support;

use std::time::Duration;

use bytes::Bytes;
use herald_proto::connection::State;
use herald_proto::{Config, Message};
use support::*;

const S: Duration = Duration::from_secs(1);

fn keepalive() -> Config {
    Config::default()
        .ping_interval(Some(30 * S))
        .pong_timeout(20 * S)
        .close_timeout(10 * S)
}

/// The 4-byte counter the connection puts in its n-th keepalive Ping.
fn ping_payload(n: u32) -> Out {
    Out::ping(n.to_be_bytes())
}

#[test]
fn the_first_deadline_is_one_ping_interval_after_the_handshake() {
    let p = Peer::server(keepalive());
    assert_eq!(p.timeout_in(), Some(30 * S));
    assert_eq!(Config::default().ping_interval, Some(30 * S));
}

#[test]
fn firing_early_does_nothing() {
    let mut p = Peer::server(keepalive());
    p.fire_at(p.start + 29 * S);
    p.expect(&[]);
    assert_eq!(p.timeout_in(), Some(30 * S));
}

#[test]
fn a_silent_connection_is_pinged_then_failed_with_1006_and_a_1011_close() {
    let mut p = Peer::server(keepalive());
    p.fire_at(p.start + 30 * S);
    p.expect(&[ping_payload(1)]);
    // Now the pong deadline.
    assert_eq!(p.timeout_in(), Some(50 * S));
    p.fire_at(p.start + 49 * S);
    p.expect(&[]);
    assert_eq!(p.state(), State::Open);
    p.fire_at(p.start + 50 * S);
    // The peer is probably gone; if merely slow, it learns why (1011), and
    // locally the connection ended abnormally (1006).
    p.expect(&[Out::close(1011)]);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
    assert_eq!(p.state(), State::Closed);
    assert_eq!(p.conn.poll_timeout(), None);
    p.assert_dead();
}

#[test]
fn the_pong_rearms_the_ping_timer() {
    let mut p = Peer::server(keepalive());
    p.fire_at(p.start + 30 * S);
    p.expect(&[ping_payload(1)]);
    p.advance(5 * S);
    assert_eq!(p.send(&[Frame::pong(1u32.to_be_bytes())]), Ok(()));
    assert_eq!(p.timeout_in(), Some(65 * S));
    // The pong deadline (50 s) is gone.
    p.fire_at(p.start + 50 * S);
    p.expect(&[]);
    assert_eq!(p.state(), State::Open);
    p.fire_at(p.start + 65 * S);
    p.expect(&[ping_payload(2)]);
    assert_eq!(p.timeout_in(), Some(85 * S));
}

#[test]
fn any_received_byte_counts_as_a_sign_of_life() {
    let mut p = Peer::server(keepalive());
    p.fire_at(p.start + 30 * S);
    p.expect(&[ping_payload(1)]);
    // One byte of a frame header: not even a frame yet, but the peer is there
    // (a busy peer's Pong may be queued behind a large message).
    p.advance(19 * S);
    let frame = Frame::binary(vec![0; 1000]).encode();
    assert_eq!(p.feed(&frame[..1]), Ok(()));
    assert_eq!(p.timeout_in(), Some(79 * S));
    p.fire_at(p.start + 50 * S);
    assert_eq!(p.state(), State::Open);
    // The rest of the frame, in pieces, keeps pushing the deadline.
    for (i, piece) in frame[1..].chunks(100).enumerate() {
        p.advance(25 * S);
        assert_eq!(p.feed(piece), Ok(()));
        assert_eq!(p.timeout_in(), Some(p.now - p.start + 30 * S), "piece {i}");
    }
    p.expect(&[Out::binary(vec![0; 1000])]);
}

#[test]
fn received_messages_keep_the_connection_from_being_pinged() {
    let mut p = Peer::server(keepalive());
    for i in 0..10 {
        p.advance(29 * S);
        p.handle_timeout();
        assert_eq!(p.send(&[Frame::text(format!("msg {i}"))]), Ok(()));
        p.expect(&[Out::text(format!("msg {i}"))]);
    }
    assert_eq!(p.timeout_in(), Some(290 * S + 30 * S));
}

#[test]
fn pings_from_the_peer_count_as_life_too() {
    let mut p = Peer::server(keepalive());
    p.advance(29 * S);
    assert_eq!(p.send(&[Frame::ping("hi")]), Ok(()));
    p.expect(&[Out::pong("hi")]);
    assert_eq!(p.timeout_in(), Some(59 * S));
}

#[test]
fn a_late_timer_still_pings_and_measures_the_pong_timeout_from_then() {
    let mut p = Peer::server(keepalive());
    p.fire_at(p.start + 100 * S);
    p.expect(&[ping_payload(1)]);
    assert_eq!(p.timeout_in(), Some(120 * S));
}

#[test]
fn only_one_ping_is_outstanding() {
    let mut p = Peer::server(keepalive());
    p.fire_at(p.start + 30 * S);
    p.fire_at(p.start + 31 * S);
    p.fire_at(p.start + 45 * S);
    p.expect(&[ping_payload(1)]);
}

#[test]
fn keepalive_off_means_no_timer_at_all() {
    let mut p = Peer::server(keepalive().ping_interval(None));
    assert_eq!(p.conn.poll_timeout(), None);
    p.fire_at(p.start + 100_000 * S);
    p.expect(&[]);
    assert_eq!(p.state(), State::Open);
}

#[test]
fn pong_timeout_after_a_partial_message_still_fails() {
    // Bytes arrived, then silence: the timer counts from the last byte.
    let mut p = Peer::server(keepalive());
    p.advance(10 * S);
    let frame = Frame::text("never finished").encode();
    assert_eq!(p.feed(&frame[..5]), Ok(()));
    p.fire_at(p.start + 40 * S);
    p.expect(&[ping_payload(1)]);
    p.fire_at(p.start + 60 * S);
    p.expect(&[Out::close(1011)]);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
}

// ----- idle timeout ---------------------------------------------------------------

fn idle() -> Config {
    Config::default()
        .ping_interval(None)
        .idle_timeout(Some(60 * S))
        .close_timeout(10 * S)
}

#[test]
fn an_idle_connection_is_closed_with_1001() {
    let mut p = Peer::server(idle());
    assert_eq!(p.timeout_in(), Some(60 * S));
    p.fire_at(p.start + 59 * S);
    p.expect(&[]);
    p.fire_at(p.start + 60 * S);
    p.expect(&[Out::close(1001)]);
    assert_eq!(
        p.state(),
        State::CloseSent {
            deadline: p.start + 70 * S
        }
    );
    // The peer answers: a clean close with its code.
    assert_eq!(p.send(&[Frame::close(1001, "")]), Ok(()));
    p.expect(&[]);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1001));
}

#[test]
fn an_idle_close_the_peer_never_answers_times_out_with_1006() {
    let mut p = Peer::server(idle());
    p.fire_at(p.start + 60 * S);
    p.expect(&[Out::close(1001)]);
    assert_eq!(p.timeout_in(), Some(70 * S));
    p.fire_at(p.start + 70 * S);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
    assert_eq!(p.state(), State::Closed);
    p.expect(&[]);
}

#[test]
fn a_received_message_rearms_the_idle_timer() {
    let mut p = Peer::server(idle().message_mode(herald_proto::MessageMode::Buffered));
    p.echo = false;
    p.advance(50 * S);
    assert_eq!(p.send(&[Frame::binary([1])]), Ok(()));
    assert_eq!(p.timeout_in(), Some(110 * S));
    p.fire_at(p.start + 60 * S);
    p.expect(&[]);
    p.fire_at(p.start + 110 * S);
    p.expect(&[Out::close(1001)]);
}

#[test]
fn control_frames_do_not_count_as_activity_for_idle() {
    let mut p = Peer::server(idle());
    p.advance(50 * S);
    assert_eq!(p.send(&[Frame::ping("x"), Frame::pong("y")]), Ok(()));
    p.expect(&[Out::pong("x")]);
    p.fire_at(p.start + 60 * S);
    p.expect(&[Out::close(1001)]);
}

#[test]
fn a_connection_that_only_sends_is_closed_between_one_and_two_idle_timeouts() {
    let mut p = Peer::server(idle());
    p.advance(50 * S);
    assert_eq!(p.conn.send(Message::text("push")), Ok(()));
    p.drain();
    p.expect(&[Out::text("push")]);
    // At 60 s it has sent recently: re-armed, not closed.
    p.fire_at(p.start + 60 * S);
    p.expect(&[]);
    let next = p.timeout_in().expect("re-armed");
    assert!(next > 60 * S && next <= 120 * S, "{next:?}");
    p.fire_at(p.start + next);
    p.expect(&[Out::close(1001)]);
    let idle_for = next - 50 * S;
    assert!(idle_for >= 60 * S && idle_for <= 120 * S);
}

#[test]
fn keepalive_and_idle_together_take_the_earlier_deadline() {
    let config = keepalive().idle_timeout(Some(45 * S));
    let mut p = Peer::server(config);
    assert_eq!(p.timeout_in(), Some(30 * S));
    p.fire_at(p.start + 30 * S);
    p.expect(&[ping_payload(1)]);
    // Pong due at 50, idle at 45.
    assert_eq!(p.timeout_in(), Some(45 * S));
    p.advance(S);
    assert_eq!(p.send(&[Frame::pong(1u32.to_be_bytes())]), Ok(()));
    p.fire_at(p.start + 45 * S);
    p.expect(&[Out::close(1001)]);
}

#[test]
fn no_keepalive_ping_while_waiting_for_the_close_reply() {
    let mut p = Peer::server(keepalive());
    let now = p.now;
    assert_eq!(
        p.conn.close(herald_proto::CloseCode::NORMAL, "", now),
        Ok(())
    );
    p.drain();
    p.expect(&[Out::close(1000)]);
    assert_eq!(p.timeout_in(), Some(10 * S));
    p.fire_at(p.start + 10 * S);
    p.expect(&[]);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
}

#[test]
fn our_own_pings_are_separate_from_keepalive() {
    let mut p = Peer::server(keepalive());
    assert_eq!(p.conn.ping(Bytes::from_static(b"app")), Ok(()));
    p.drain();
    p.expect(&[Out::ping("app")]);
    assert_eq!(p.timeout_in(), Some(30 * S));
}
