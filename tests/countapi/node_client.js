// Runs npm's countapi-js 1.0.2, unchanged, against a hitcounter.
//
// Usage: NODE_PATH=<deps>/node/node_modules node node_client.js BASE_URL.
// The library hard-codes https://api.countapi.xyz in a private constant and
// fetches through cross-fetch: the one change is a cross-fetch in the
// require cache, loaded first, that rewrites that prefix to BASE_URL and
// refuses any other address. Exits non-zero on the first failure.
'use strict';
const assert = require('assert');

const base = process.argv[2].replace(/\/$/, '');
const COUNTAPI = 'https://api.countapi.xyz';

const library = require.resolve('countapi-js');
assert.strictEqual(require('countapi-js/package.json').version, '1.0.2');
const crossFetchPath = require.resolve('cross-fetch', { paths: [library] });
const realFetch = require(crossFetchPath);
require.cache[crossFetchPath].exports = function redirected(url, options) {
    const target = String(url).replace(COUNTAPI, base);
    if (!target.startsWith(base + '/')) {
        throw new Error(`refusing ${url}`);
    }
    return realFetch(target, options);
};
const countapi = require('countapi-js');

async function main() {
    const ns = 'js.client';
    let r = await countapi.create({ namespace: ns, key: 'visits', value: 1, enable_reset: true, update_lowerbound: -1 });
    assert.deepStrictEqual(r, { status: 200, path: `${ns}/visits`, namespace: ns, key: 'visits', value: 1 });

    r = await countapi.hit(ns, 'visits');
    assert.deepStrictEqual(r, { status: 200, path: `${ns}/visits`, value: 2 });
    r = await countapi.get(ns, 'visits');
    assert.deepStrictEqual(r, { status: 200, path: `${ns}/visits`, value: 2 });
    r = await countapi.update(ns, 'visits', -1);
    assert.deepStrictEqual(r, { status: 200, path: `${ns}/visits`, value: 1 });
    r = await countapi.set(ns, 'visits', 10);
    assert.deepStrictEqual(r, { status: 200, path: `${ns}/visits`, old_value: 1, value: 10 });

    r = await countapi.info(ns, 'visits');
    assert.strictEqual(r.status, 200);
    assert.strictEqual(r.path, `${ns}/visits`);
    assert.strictEqual(r.ttl, -1);
    assert.strictEqual(r.value, 10);
    assert.strictEqual(r.enable_reset, true);

    // The default namespace is spelt out in X-Path; a missing key is a 404
    // the promise does not fail on.
    r = await countapi.get('js-missing');
    assert.deepStrictEqual(r, { status: 404, path: 'default/js-missing', value: null });

    // A counter made by a hit cannot be set without ADMIN_TOKEN: 403 with
    // old_value equal to value, as the library documents.
    r = await countapi.hit('js-by-hit');
    assert.strictEqual(r.value, 1);
    r = await countapi.set('js-by-hit', 0);
    assert.strictEqual(r.status, 403);
    assert.strictEqual(r.old_value, 1);
    assert.strictEqual(r.value, 1);
    r = await countapi.update('js-by-hit', 5);
    assert.strictEqual(r.status, 403);

    // visits() and event() use :HOST: and :PATHNAME:, filled from Origin
    // and Referer; Node sends neither, so the 400 says so.
    await assert.rejects(countapi.event('clicked'), (error) => {
        assert.match(String(error), /Origin or Referer/);
        return true;
    });

    r = await countapi.stats();
    assert.strictEqual(r.status, 200);
    assert.strictEqual(r.keys_created, 2);
    assert.strictEqual(typeof r.requests, 'number');
    assert.strictEqual(typeof r.version, 'string');
    console.log('node countapi-js 1.0.2: ok');
}

main().catch((error) => {
    console.error(error);
    process.exit(1);
});
