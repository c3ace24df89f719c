"""The hub's side of its sync with the central registry: statuses and the trust list in
(``sync``), visits out (``outbox``, derived by ``visits``), the HTTP client (``client``)
and the records kept of it (``records``)."""
