// Pintu wallet's service worker: keeps the wallet's shell (page, script, style, manifest,
// icons) so the pass shows without a network, in a lift or a basement. Network first, so
// a new version or language arrives when online; the cache answers when the network does
// not (or takes longer than a few seconds). The API's answers are never cached: the pass
// itself lives in the page's storage. Registered as /wallet/sw.js?v=<static version>.
"use strict";

const VERSION = new URL(self.location.href).searchParams.get("v") || "0";
const CACHE = "pintu-wallet-" + VERSION;
const SHELL = [
  "/wallet/",
  "/wallet/manifest.webmanifest",
  "/wallet/icon-192.png",
  "/wallet/icon-512.png",
  "/static/wallet.js?v=" + VERSION,
  "/static/wallet.css?v=" + VERSION,
];
const NETWORK_WAIT_MS = 4000;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((n) => n.startsWith("pintu-wallet-") && n !== CACHE).map((n) => caches.delete(n))
      ))
      .then(() => self.clients.claim())
  );
});

// A page that opened while this worker was installing asks to be taken over, so the
// wallet opened right after its link already works offline.
self.addEventListener("message", (event) => {
  if (event.data === "claim") event.waitUntil(self.clients.claim());
});

function kept(url) {
  return SHELL.includes(url.pathname + url.search) || url.pathname === "/wallet/";
}

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_WAIT_MS);
  try {
    const response = await fetch(request, { signal: controller.signal });
    if (response.ok) await cache.put(key, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(key);
    if (cached) return cached;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !kept(url)) return;
  // The wallet's page is kept under one key, whatever its query.
  const key = url.pathname === "/wallet/" ? "/wallet/" : url.pathname + url.search;
  event.respondWith(networkFirst(request, key));
});
