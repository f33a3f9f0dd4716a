//! The cluster's web page (seed 001's master page, SPEC §5): static assets compiled into
//! the binary — no CDN, no Node.js build step. The page reads `/ui/events` (server-sent
//! events, each a `UiSnapshot` of herd-api) and draws everything itself.
//!
//! It owns the files and their content types, and nothing else: no I/O, no HTTP — the
//! server that hosts the page serves these bytes.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
];

/// A gateway's own page (its admin listener's `/ui/`): it reads the gateway's `/status`.
const GATEWAY_FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/gateway.html"),
    ),
    (
        "gateway.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/gateway.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
];

/// The file at `path` under the cluster page's `/ui/` ("" is the page itself).
pub fn asset(path: &str) -> Option<Asset> {
    find(FILES, path)
}

/// The file at `path` under a gateway admin listener's `/ui/`.
pub fn gateway_asset(path: &str) -> Option<Asset> {
    find(GATEWAY_FILES, path)
}

fn find(files: &[(&str, &'static str, &'static [u8])], path: &str) -> Option<Asset> {
    let name = if path.is_empty() { "index.html" } else { path };
    files
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, content_type, body)| Asset { content_type, body })
}

#[cfg(test)]
mod tests {
    use super::{asset, gateway_asset};

    #[test]
    fn the_page_and_its_files_are_embedded_and_nothing_else_is_served() {
        let page = asset("").unwrap();
        assert!(page.content_type.starts_with("text/html"));
        let html = std::str::from_utf8(page.body).unwrap();
        // Everything the page loads comes from /ui/ itself: no CDN.
        assert!(html.contains("/ui/app.js") && html.contains("/ui/app.css"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "an external URL"
        );
        assert!(asset("app.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("missing.js").is_none());
        let gw = std::str::from_utf8(gateway_asset("").unwrap().body).unwrap();
        assert!(gw.contains("/ui/gateway.js") && !gw.contains("http://"));
        assert!(
            gateway_asset("app.js").is_none(),
            "the cluster's script is not the gateway's"
        );
    }
}
