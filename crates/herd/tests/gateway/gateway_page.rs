//! A gateway's own page on its admin listener (`/ui/`), in a real headless chromium: with
//! an admin token required even for reads, the page (given the token in its address)
//! shows every server of a backend up, and a server killed while the page is open turns
//! down on it with no reload. A screenshot goes to `target/tmp/ui-screenshots/`.

use herd_testkit::browser::{chromium_or_skip, until, Browser};
use herd_testkit::prelude::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_page_follows_a_killed_server_live() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let dir = temp_dir();
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, "page-secret\n").unwrap();
    let gw = Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\ntoken_for_reads = true\n\n\
         [[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\n{}\n\n\
         [backends.app.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"200ms\"\n\
         timeout = \"200ms\"\nunhealthy_threshold = 2\nhealthy_threshold = 2\n",
        token_file.display(),
        servers(&[(&a, 1), (&b, 1)])
    ));
    // The page's files need no token; its data does.
    let c = client();
    assert_eq!(get(&c, &gw.admin_url("/ui/")).await.unwrap().status, 200);
    assert_eq!(get(&c, &gw.admin_url("/status")).await.unwrap().status, 401);

    let mut page = Browser::launch(&bin).await;
    page.navigate(&format!("{}#token=page-secret", gw.admin_url("/ui/")))
        .await;
    let row = |addr: std::net::SocketAddr| {
        format!("document.querySelector('tr[data-server=\"{addr}\"] td.server-state')?.textContent")
    };
    until(
        &mut page,
        "both servers up",
        &format!("{} === 'up' && {} === 'up'", row(a.addr), row(b.addr)),
    )
    .await;
    until(
        &mut page,
        "the backend with 2 of 2 usable",
        "document.querySelector('h3[data-backend=\"app\"] .up')?.textContent === '2/2'",
    )
    .await;
    assert_eq!(page.eval("window.__herd_marker = 7").await, json!(7));
    b.kill();
    until(
        &mut page,
        "the killed server down",
        &format!("{} !== 'up'", row(b.addr)),
    )
    .await;
    until(
        &mut page,
        "1 of 2 usable",
        "document.querySelector('h3[data-backend=\"app\"] .up')?.textContent === '1/2'",
    )
    .await;
    assert_eq!(
        page.eval("window.__herd_marker").await,
        json!(7),
        "the page was reloaded"
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    page.screenshot(&shots.join("gateway.png")).await;
}
