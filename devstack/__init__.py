"""The development stack: what `make up` runs beside the product and the tests use, never
shipped in the trackflow package (a checkout puts it on the path; see the Makefile).

* `demo`, `demo_history`: `trackflow up --demo`'s sample orders and simulated weeks;
* `carrier_simulator`: an EasyPost-compatible carrier (`trackflow simulate carrier`);
* `doubles`: SendGrid and Twilio (`doubles.providers`, `trackflow simulate providers`), Slack,
  Gorgias, Zendesk and Klaviyo, speaking their real wire formats.

It speaks to the product over HTTP and reads its ledger: it imports `trackflow` and
`activities`, never `starters`, whose development commands (`up --demo`, `simulate`) import it
when they run (`starters.devstack_gate`) and hand the demo what it shows as the CLI does.
"""
