"""The consumer-facing web pages: the public catalogue (/shop/), the hosted pay pages (/pay/) and "my pay-later" (/me/).

Why here and not in ``consumers``: these pages show and act on credit orders, agreements, charge
attempts and score breakdowns, which live in ``bnpl`` and ``scoring``. ``consumers`` sits below
both and must import nothing from them (docs/architecture.md), so the views that touch orders are
in the top app. The pages that need only the consumers app (log in, sign up, identity
verification, the personal spend cap) stay in ``consumers/views.py``, and ``urls_me`` routes to both.

Layout: ``selectors`` (reads scoped to the signed-in consumer), ``services`` (the two writes the
pages need that the core did not have yet), ``forms``, ``shop`` / ``pay`` / ``me`` (thin views;
``order_actions``: report a problem, dispute, due-date extension), ``urls_shop`` / ``urls_pay`` /
``urls_me``. Templates: ``templates/bnpl/`` (catalogue, pay pages)
and ``templates/consumers/`` (the portal).
"""
