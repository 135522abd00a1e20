//! Two herald nodes sharing channels through a real redis-server
//! (`[broker] url`): a client on one node gets what a backend publishes
//! through the other, in one offset sequence, and a client that drops
//! from one node recovers what it missed on the other.

mod support;

use serde_json::json;
use support::cluster::Redis;
use support::*;

fn node(redis: &Redis) -> herald_server::ServerConfig {
    let mut c = config();
    c.broker.url = vec![redis.url()];
    c
}

#[tokio::test]
async fn a_client_on_one_node_gets_what_the_other_publishes_and_recovers_there() {
    let redis = Redis::start(false).await;
    let a = TestServer::connect(node(&redis)).await;
    let b = TestServer::connect(node(&redis)).await;

    let mut bob = b.named("Bob").await;
    let reply = bob.subscribe("chat:n").await;
    let epoch = reply["epoch"].as_str().expect("an epoch").to_owned();
    let published = a.api_publish("chat:n", json!({"n": 1})).await;
    assert_eq!(published["offset"], 1);
    assert_eq!(
        published["epoch"],
        epoch.as_str(),
        "one epoch for both nodes"
    );
    let push = bob.push().await;
    assert_eq!(push["push"]["pub"]["data"]["n"], 1, "{push}");
    assert_eq!(push["push"]["pub"]["offset"], 1);
    drop(bob);

    // Bob is away; the backend goes on publishing through node B.
    for n in 2..=4 {
        let p = b.api_publish("chat:n", json!({"n": n})).await;
        assert_eq!(p["offset"], n);
    }
    // Bob comes back to node A and recovers from offset 1.
    let mut bob = a.named("Bob").await;
    let id = bob
        .send(
            "subscribe",
            json!({"channel": "chat:n", "recover": true, "epoch": epoch, "offset": 1}),
        )
        .await;
    let reply = bob.reply(id).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    assert_eq!(
        offsets(reply["result"]["publications"].as_array().unwrap()),
        [2, 3, 4]
    );
    drop(bob);
    a.stop().await;
    b.stop().await;
}
