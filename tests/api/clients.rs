//! One notion of "client" everywhere: an IPv4 address, or the IPv6 network around an address
//! (`CLIENT_IPV6_PREFIX_LEN`, /64 by default). The rate limits and the login monitor count
//! by it, so an IPv6 host rotating addresses inside its allocation is still one client. All
//! of it through a trusted proxy, which is how a client's address arrives in production.

use reqwest::StatusCode;

use crate::helpers::{assert_problem, spawn_app_with};

const PROXY: (&str, &str) = ("TRUSTED_PROXIES", "127.0.0.1/32");

#[tokio::test]
async fn spraying_usernames_from_addresses_of_one_ipv6_64_blocks_that_network() {
    let app = spawn_app_with(&[PROXY, ("SUSPICIOUS_LOGIN_USERNAMES_PER_IP", "3")]).await;
    let user = app.new_user().await;
    for (address, name) in [
        ("2001:db8:7:1::a1", "spray_a"),
        ("2001:db8:7:1:ffff::a2", "spray_b"),
        ("2001:db8:7:1:1234:5678:9abc:def0", "spray_c"),
    ] {
        let response = app.login_from(address, name, "Summer2026-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{address}");
    }

    let same_network = app
        .login_from("2001:db8:7:1::beef", &user.username, &user.password)
        .await;
    let body = assert_problem(same_network, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/login-locked");
    assert_eq!(
        app.login_from("2001:db8:7:2::a1", &user.username, &user.password)
            .await
            .status(),
        StatusCode::OK,
        "the neighbouring /64 is another client"
    );

    let events = app.wait_for_audit("security.suspicious_login", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target.as_deref(), Some("ip:2001:db8:7:1::/64"));
    let logins = app.wait_for_audit("auth.login", 6).await;
    let addresses: Vec<_> = logins
        .iter()
        .filter_map(|e| e.client_ip.as_deref())
        .collect();
    assert!(
        addresses.contains(&"2001:db8:7:1:ffff::a2"),
        "the audit trail keeps each full address: {addresses:?}"
    );
}

#[tokio::test]
async fn addresses_of_one_ipv6_64_count_as_one_source_of_failures_for_a_username() {
    let app = spawn_app_with(&[PROXY, ("SUSPICIOUS_LOGIN_IPS_PER_USERNAME", "3")]).await;
    let victim = app.new_user().await;
    for address in ["2001:db8:9:1::1", "2001:db8:9:1::2", "2001:db8:9:1::3"] {
        let response = app
            .login_from(address, &victim.username, "wrong-guess-1234")
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{address}");
    }
    assert_eq!(
        app.login_from("198.51.100.20", &victim.username, &victim.password)
            .await
            .status(),
        StatusCode::OK,
        "one host cannot lock an account by rotating its own addresses"
    );

    // The control: three distinct networks do lock it.
    for address in ["2001:db8:9:1::1", "2001:db8:9:2::1", "2001:db8:9:3::1"] {
        app.login_from(address, &victim.username, "wrong-guess-1234")
            .await;
    }
    let locked = app
        .login_from("198.51.100.20", &victim.username, &victim.password)
        .await;
    assert_problem(locked, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn the_per_client_limit_counts_one_ipv6_64_as_one_client() {
    let app = spawn_app_with(&[PROXY, ("RATE_LIMIT_AUTH", "3/hour")]).await;
    for address in ["2001:db8:5:1::1", "2001:db8:5:1::2", "2001:db8:5:1:a::3"] {
        let response = app.login_from(address, "someone", "guess-number-n").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{address}");
    }
    assert_problem(
        app.login_from("2001:db8:5:1::4", "someone", "guess-number-n")
            .await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(
        app.login_from("2001:db8:5:2::1", "someone", "guess-number-n")
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "another /64 has its own budget"
    );
}

#[tokio::test]
async fn the_ipv6_prefix_that_makes_one_client_is_configurable() {
    let app = spawn_app_with(&[
        PROXY,
        ("RATE_LIMIT_AUTH", "2/hour"),
        ("CLIENT_IPV6_PREFIX_LEN", "48"),
    ])
    .await;
    for address in ["2001:db8:5:1::1", "2001:db8:5:2::1"] {
        let response = app.login_from(address, "someone", "guess-number-n").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{address}");
    }
    assert_problem(
        app.login_from("2001:db8:5:3::1", "someone", "guess-number-n")
            .await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(
        app.login_from("2001:db8:6::1", "someone", "guess-number-n")
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "another /48 has its own budget"
    );
}
