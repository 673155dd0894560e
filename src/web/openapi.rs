//! The OpenAPI 3 description, generated from the handlers' annotations and
//! served at `/openapi.json` (by [`ops::openapi`]). A test keeps it equal to
//! the router's routes.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{admin, badges, counters, live, ops, pages, seed};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hitcounter",
        description = "A self-hosted hit counter: the seed page of the Linode guide, and a CountAPI-compatible counter API with badges. Every counter path `/{op}/{namespace}/{key}` also exists as `/{op}/{key}` (namespace `default`). Namespaces and keys may hold `:HOST:` and `:PATHNAME:`, filled from the request's Origin or Referer. Every counter route answers `X-Path: namespace/key`, takes `callback=<name>` for JSONP (always 200, the status in the object's `status`, `application/javascript`) and `img` for a 1x1 GIF."
    ),
    paths(
        seed::index, seed::reset_counter, ops::healthz, ops::readyz, ops::metrics, ops::openapi,
        counters::hit, counters::get, admin::set, counters::update, admin::reset,
        admin::delete, admin::create, counters::info, counters::history, counters::stats,
        badges::badge, pages::counter, pages::dashboard, live::live,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "seed", description = "The Linode guide's page and reset"),
        (name = "counters", description = "The CountAPI-compatible counter API"),
        (name = "badges", description = "SVG badges and shields.io endpoint JSON"),
        (name = "pages", description = "HTML pages: a counter's page and the dashboard"),
        (name = "operations", description = "Health, readiness, metrics, this description"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
