//! The etcd backend over TLS and with etcd's user/password authentication,
//! against a real etcd with certificates made at test time.

use vpc_model::{RegionInit, World};
use vpc_store::etcd::EtcdStore;
use vpc_store::testkit::{EtcdServer, TestCerts};
use vpc_store::{EtcdSecurity, EtcdTls, EtcdUser, StateStore};

/// Writes one record through `store` and reads it back through a second
/// store made the same way: the connection really carries data.
fn write_and_read(mut store: EtcdStore, mut again: EtcdStore) {
    let mut world = World::default();
    world.put(RegionInit {
        id: "us-east-1".into(),
        default_vpc: None,
        default_dhcp_options: None,
    });
    let changes = world.take_changes();
    let rev = store.commit(0, &world, &changes).expect("commit over TLS");
    let snapshot = again.load().expect("load over TLS");
    assert_eq!(snapshot.revision, rev);
    assert!(snapshot.world.get::<RegionInit>("us-east-1").is_some());
}

fn tls(ca: &std::path::Path, client: Option<&TestCerts>) -> EtcdSecurity {
    EtcdSecurity {
        tls: Some(EtcdTls {
            ca: Some(ca.to_path_buf()),
            cert: client.map(|c| c.client_cert.clone()),
            key: client.map(|c| c.client_key.clone()),
        }),
        user: None,
    }
}

#[test]
fn a_store_over_tls_works_and_wrong_settings_fail_clearly() {
    let certs = TestCerts::generate().unwrap();
    let etcd = EtcdServer::start_tls(&certs, false).unwrap();
    let eps = [etcd.endpoint.clone()];
    let good = tls(&certs.ca, None);
    write_and_read(
        EtcdStore::connect_with(&eps, "/tls", &good).unwrap(),
        EtcdStore::connect_with(&eps, "/tls", &good).unwrap(),
    );

    // Plaintext to the TLS endpoint: refused at once, not after the retries.
    let started = std::time::Instant::now();
    let plain = [eps[0].replace("https://", "http://")];
    let err = EtcdStore::connect(&plain, "/tls").unwrap_err().to_string();
    eprintln!("{err}");
    assert!(err.contains("refused vpcd"), "{err}");
    assert!(err.contains("TLS"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{err}"
    );

    // A CA that did not sign the server's certificate.
    let started = std::time::Instant::now();
    let err = EtcdStore::connect_with(&eps, "/tls", &tls(&certs.other_ca, None))
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{err}"
    );

    // A CA file that is not there.
    let err = EtcdStore::connect_with(&eps, "/tls", &tls(&certs.ca.with_extension("nope"), None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--etcd-ca") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn a_client_certificate_is_sent_when_etcd_demands_one() {
    let certs = TestCerts::generate().unwrap();
    let etcd = EtcdServer::start_tls(&certs, true).unwrap();
    let eps = [etcd.endpoint.clone()];
    let with_cert = tls(&certs.ca, Some(&certs));
    write_and_read(
        EtcdStore::connect_with(&eps, "/mtls", &with_cert).unwrap(),
        EtcdStore::connect_with(&eps, "/mtls", &with_cert).unwrap(),
    );
    let started = std::time::Instant::now();
    let err = EtcdStore::connect_with(&eps, "/mtls", &tls(&certs.ca, None))
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("client certificate"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{err}"
    );
}

#[test]
fn etcd_users_log_in_and_a_wrong_password_fails_clearly() {
    let etcd = EtcdServer::start().unwrap();
    etcd.enable_auth("s3cret-pw").unwrap();
    let eps = [etcd.endpoint.clone()];
    let user = |password: &str| EtcdSecurity {
        tls: None,
        user: Some(EtcdUser {
            name: "root".into(),
            password: password.into(),
        }),
    };
    write_and_read(
        EtcdStore::connect_with(&eps, "/auth", &user("s3cret-pw")).unwrap(),
        EtcdStore::connect_with(&eps, "/auth", &user("s3cret-pw")).unwrap(),
    );

    let started = std::time::Instant::now();
    let err = EtcdStore::connect_with(&eps, "/auth", &user("wrong"))
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("wrong etcd user or password"), "{err}");
    assert!(
        !err.contains("wrong\""),
        "the password is not echoed: {err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{err}"
    );

    // A user whose role covers one prefix only: in there it works, anywhere
    // else connecting fails and says why.
    etcd.etcdctl_as("root:s3cret-pw", &["role", "add", "vpcd-auth"])
        .unwrap();
    for args in [
        &[
            "role",
            "grant-permission",
            "vpcd-auth",
            "--prefix=true",
            "readwrite",
            "/auth2/",
        ][..],
        &["user", "add", "vpcd:vpcd-pw"],
        &["user", "grant-role", "vpcd", "vpcd-auth"],
    ] {
        etcd.etcdctl_as("root:s3cret-pw", args).unwrap();
    }
    let limited = EtcdSecurity {
        tls: None,
        user: Some(EtcdUser {
            name: "vpcd".into(),
            password: "vpcd-pw".into(),
        }),
    };
    write_and_read(
        EtcdStore::connect_with(&eps, "/auth2", &limited).unwrap(),
        EtcdStore::connect_with(&eps, "/auth2", &limited).unwrap(),
    );
    let err = EtcdStore::connect_with(&eps, "/auth", &limited)
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("may not use this key prefix"), "{err}");

    // No user at all against a cluster with auth on.
    let err = EtcdStore::connect(&eps, "/auth").unwrap_err().to_string();
    eprintln!("{err}");
    assert!(err.contains("authentication enabled"), "{err}");
}

#[test]
fn an_expired_login_token_is_renewed() {
    // etcd forgets a simple token after --auth-token-ttl seconds unused.
    let etcd = EtcdServer::start_with(&["--auth-token-ttl=1".into()]).unwrap();
    etcd.enable_auth("ttl-pw").unwrap();
    let security = EtcdSecurity {
        tls: None,
        user: Some(EtcdUser {
            name: "root".into(),
            password: "ttl-pw".into(),
        }),
    };
    let eps = [etcd.endpoint.clone()];
    let store = EtcdStore::connect_with(&eps, "/ttl", &security).unwrap();
    let again = EtcdStore::connect_with(&eps, "/ttl", &security).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    write_and_read(store, again);
}
