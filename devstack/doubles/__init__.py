"""Local doubles of the outside services trackflow talks to, for demos and tests only.

``providers`` serves SendGrid's v3 mail send and Twilio's Messages API as they answer on the
wire (the official SDKs are pointed at it), and calls back as they do: SendGrid's signed
Event Webhook, Twilio's signed status callbacks and inbound messages. ``slack``, ``gorgias``,
``zendesk`` and ``klaviyo`` stand in for the ops integrations, served beside them
(``providers.ops``).
"""
