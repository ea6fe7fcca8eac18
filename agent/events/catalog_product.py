"""Catalog: the product events the Loom documentation lists — marketing, onboarding, resource,
notification and realtime. Property names are the snake_case forms of the documentation's
TypeScript examples (`scrollDepthPercent` -> `scroll_depth_percent`)."""

from __future__ import annotations

from agent.events.catalog_types import EventSpec, array, boolean, described, event, integer, number, obj, req, string

# --- shared properties -------------------------------------------------------------------------

ID = 256            # longest accepted id
NAME = 512          # longest accepted human-readable name

SOURCE = string("Traffic source (utm_source), e.g. google, newsletter.", max_length=ID)
MEDIUM = string("Marketing medium (utm_medium), e.g. cpc, email, social.", max_length=ID)
CAMPAIGN = string("Campaign name (utm_campaign).", max_length=ID)
TERM = string("Paid search term (utm_term).", max_length=NAME)
CONTENT = string("Ad or link variant (utm_content).", max_length=ID)
PAGE = string("Path (or URL) of the page.", max_length=2048)
REFERRER = string("Referring URL.", max_length=2048)
EXPERIMENT_ID = string("A/B test id.", max_length=ID)
VARIANT_ID = string("A/B test variant id.", max_length=ID)

STEP = string("Onboarding step name, e.g. profile_setup.", max_length=ID)
STEP_NUMBER = integer("1-based position of the step in the flow.", minimum=1, maximum=2**31 - 1)   # int4 column
TOTAL_STEPS = integer("Number of steps in the flow.", minimum=1)
FLOW_ID = string("Id of one run through the onboarding flow (the trace of its steps).", max_length=ID)
SECONDS_SPENT = number("Seconds spent on the step.", minimum=0)

RESOURCE_ID = string("Resource id.", max_length=ID)
RESOURCE_TYPE = string("Kind of resource.", enum={
    "pdf", "video", "audio", "article", "link", "image", "document", "worksheet", "template", "other"})
RESOURCE_NAME = string("Resource title.", max_length=NAME)
BYTES = integer("Size in bytes.", minimum=0)
SHARE_METHOD = string("How it was shared.", enum={"link", "email", "in_app", "social", "other"})

NOTIFICATION_ID = string("Notification id.", max_length=ID)
NOTIFICATION_TYPE = string("Application-defined notification type, e.g. session_reminder.", max_length=ID)
CHANNEL = string("Delivery channel.", enum={"push", "email", "sms", "in_app", "slack", "webhook"})
SINCE_DELIVERY = number("Seconds between delivery and this interaction.", minimum=0)

CONNECTION_ID = string("Client-chosen id of one realtime connection (the key of its span).", max_length=ID)
TRANSPORTS = {"websocket", "sse", "polling"}
TRANSPORT = string("Realtime transport.", enum=TRANSPORTS)
LATENCY_MS = number("Round-trip latency in milliseconds.", minimum=0)
ATTEMPT = integer("1-based attempt number (reconnects count up).", minimum=1)
REASON = string("Free-text reason (span attribute, never a label).", max_length=NAME)

MARKETING: tuple[EventSpec, ...] = (
    event("landing_page_view", "marketing", "A visit to a landing page, with its UTM parameters.",
          page=PAGE, referrer=REFERRER, source=SOURCE, medium=MEDIUM, campaign=CAMPAIGN, term=TERM,
          content=CONTENT, experiment_id=EXPERIMENT_ID, variant_id=VARIANT_ID),
    event("lead_capture", "marketing", "A lead was captured: e-mail signup, demo request, trial signup.",
          lead_type=req(string("What the visitor asked for.", enum={
              "email_signup", "demo_request", "trial_signup", "contact_form", "waitlist", "other"})),
          form_id=string("Form that captured the lead.", max_length=ID), page=PAGE,
          source=SOURCE, medium=MEDIUM, campaign=CAMPAIGN),
    event("signup_step", "marketing", "Progress through the signup funnel, one event per step.",
          step=req(string("Signup step name, e.g. email, verify, profile.", max_length=ID)),
          step_number=described(STEP_NUMBER, "1-based position of the step in the signup funnel."),
          total_steps=described(TOTAL_STEPS, "Number of steps in the signup funnel."),
          status=string("What happened at the step.", enum={"started", "completed", "failed", "abandoned"}),
          method=string("Signup method.", enum={"email", "google", "github", "apple", "microsoft", "sso", "other"}),
          time_spent_seconds=SECONDS_SPENT, source=SOURCE, medium=MEDIUM, campaign=CAMPAIGN),
    event("cta_click", "marketing", "A call-to-action was clicked.",
          cta_id=req(string("Stable id of the call-to-action.", max_length=ID)),
          cta_text=string("Visible text of the call-to-action.", max_length=NAME),
          location=string("Where on the page, e.g. hero, pricing_table, footer.", max_length=ID),
          page=PAGE, destination=string("Where the click leads.", max_length=2048),
          experiment_id=EXPERIMENT_ID, variant_id=VARIANT_ID),
    event("campaign_conversion", "marketing", "A visitor converted, attributed to a marketing campaign.",
          conversion_type=req(string("What the conversion was.", enum={
              "signup", "trial", "purchase", "subscription", "upgrade", "lead", "demo", "other"})),
          conversion_value=number("Value of the conversion in `currency` (0 for a free trial).", minimum=0),
          currency=string("ISO 4217 currency code.", max_length=3),
          source=SOURCE, medium=MEDIUM, campaign=CAMPAIGN, experiment_id=EXPERIMENT_ID, variant_id=VARIANT_ID),
    event("experiment_view", "marketing", "A visitor was exposed to a variant of an A/B test.",
          experiment_id=req(EXPERIMENT_ID), variant_id=req(VARIANT_ID),
          experiment_name=string("Human-readable experiment name.", max_length=NAME), page=PAGE),
    event("referral", "marketing", "A user referral: invitation sent, link clicked, referred user signed up.",
          status=string("Stage of the referral.", enum={"sent", "clicked", "signed_up", "converted"}),
          referral_code=string("Referral code.", max_length=ID),
          channel=string("How the referral was passed on.", enum={"email", "link", "social", "sms", "other"}),
          reward_value=number("Value of the reward granted.", minimum=0)),
    event("newsletter_signup", "marketing", "A newsletter subscription.",
          list_id=string("Newsletter list.", max_length=ID), page=PAGE, source=SOURCE,
          double_opt_in=boolean("True when the address still has to be confirmed.")),
)

ONBOARDING: tuple[EventSpec, ...] = (
    event("onboarding_step_started", "onboarding", "The user entered an onboarding step.",
          step=req(STEP), step_number=STEP_NUMBER, total_steps=TOTAL_STEPS, flow_id=FLOW_ID),
    event("onboarding_step_completed", "onboarding", "The user completed an onboarding step.",
          step=req(STEP), step_number=STEP_NUMBER, total_steps=TOTAL_STEPS, time_spent_seconds=SECONDS_SPENT,
          interaction_count=integer("Clicks, keystrokes and other interactions on the step.", minimum=0),
          flow_id=FLOW_ID),
    event("onboarding_completed", "onboarding", "The whole onboarding flow was completed.",
          total_steps=TOTAL_STEPS, total_time_seconds=number("Seconds from first step to completion.", minimum=0),
          steps_skipped=integer("Steps the user skipped.", minimum=0), flow_id=FLOW_ID),
    event("onboarding_abandoned", "onboarding", "The user left the onboarding flow unfinished.",
          step=described(STEP, "The step the user left from."), step_number=STEP_NUMBER,
          total_steps=TOTAL_STEPS, time_spent_seconds=described(SECONDS_SPENT, "Seconds spent in the flow."),
          reason=REASON, flow_id=FLOW_ID),
    event("feature_discovered", "onboarding", "The user discovered a feature during onboarding.",
          feature=req(string("Feature name.", max_length=ID)),
          discovery_method=string("How it was discovered.", enum={
              "tooltip", "hint", "tour", "navigation", "search", "other"}),
          step=STEP, flow_id=FLOW_ID),
    event("first_action", "onboarding", "An activation milestone: the user's first session, task, goal...",
          action=req(string("The milestone reached.", enum={
              "session_booked", "session_completed", "task_created", "task_completed", "goal_created",
              "goal_completed", "resource_viewed", "resource_created", "message_sent", "other"})),
          seconds_since_signup=number("Seconds between signup and the milestone.", minimum=0)),
    event("onboarding_hint_interaction", "onboarding", "The user interacted with an onboarding tooltip or hint.",
          hint_id=req(string("Hint id.", max_length=ID)),
          action=req(string("What the user did.", enum={"shown", "clicked", "dismissed", "completed"})),
          step=STEP, flow_id=FLOW_ID),
    event("onboarding_personalization", "onboarding", "The user chose preferences during onboarding.",
          role=string("Role the user picked, e.g. coach or client.", max_length=ID),
          goals=array("Goals the user picked."), preferences=obj("Other chosen preferences."),
          step=STEP, flow_id=FLOW_ID),
    event("onboarding_reengagement", "onboarding", "The user came back to an unfinished onboarding flow.",
          step=described(STEP, "The step the user resumes at."),
          days_since_last_activity=number("Days since the user last worked on the flow.", minimum=0),
          channel=string("What brought the user back.", enum={"email", "push", "sms", "in_app", "direct", "other"}),
          flow_id=FLOW_ID),
)

RESOURCE: tuple[EventSpec, ...] = (
    event("resource_viewed", "resource", "A resource was viewed, with view duration and scroll depth.",
          resource_id=req(RESOURCE_ID), resource_type=RESOURCE_TYPE, resource_name=RESOURCE_NAME,
          view_duration_seconds=number("Seconds the resource was on screen.", minimum=0),
          scroll_depth_percent=number("Deepest scroll position reached, in percent.", minimum=0, maximum=100),
          is_first_view=boolean("True on the user's first view of this resource.")),
    event("resource_downloaded", "resource", "A resource was downloaded.",
          resource_id=req(RESOURCE_ID), resource_type=RESOURCE_TYPE, resource_name=RESOURCE_NAME, bytes=BYTES),
    event("resource_shared", "resource", "A resource was shared.",
          resource_id=req(RESOURCE_ID), resource_type=RESOURCE_TYPE, share_method=SHARE_METHOD,
          recipient_count=integer("Number of recipients.", minimum=0)),
    event("resource_created", "resource", "A resource was created or uploaded.",
          resource_id=req(RESOURCE_ID), resource_type=RESOURCE_TYPE, resource_name=RESOURCE_NAME, bytes=BYTES,
          visibility=string("Who can see it.", enum={"private", "shared", "public"})),
    event("resource_search", "resource", "A search in the resource library.",
          query=string("The search text (scrubbed by the privacy layer).", max_length=NAME),
          results_count=integer("Number of results.", minimum=0),
          resource_type=described(RESOURCE_TYPE, "Type filter, when one was applied."),
          filters=obj("Other filters applied."),
          duration_ms=number("Search latency in milliseconds.", minimum=0)),
    event("resource_recommendation", "resource", "An interaction with a recommended resource.",
          resource_id=req(RESOURCE_ID),
          action=req(string("What happened to the recommendation.", enum={"shown", "clicked", "dismissed"})),
          position=integer("0-based position in the recommendation list.", minimum=0),
          algorithm=string("Recommender that produced it.", max_length=ID), resource_type=RESOURCE_TYPE),
    event("resource_engagement_score", "resource", "A resource's engagement score was updated.",
          resource_id=req(RESOURCE_ID), score=req(number("New engagement score, 0-100.", minimum=0, maximum=100)),
          previous_score=number("Score before the update.", minimum=0, maximum=100), resource_type=RESOURCE_TYPE),
    event("resource_rating", "resource", "A resource was rated.",
          resource_id=req(RESOURCE_ID), rating=req(integer("Stars, 1-5.", minimum=1, maximum=5)),
          has_feedback=boolean("True when written feedback came with the rating."), resource_type=RESOURCE_TYPE),
    event("resource_deleted", "resource", "A resource was deleted.",
          resource_id=req(RESOURCE_ID), resource_type=RESOURCE_TYPE, reason=REASON),
)

NOTIFICATION: tuple[EventSpec, ...] = (
    event("notification_delivered", "notification", "A notification was delivered.",
          notification_id=req(NOTIFICATION_ID), notification_type=NOTIFICATION_TYPE, channel=req(CHANNEL),
          delivery_latency_ms=number("Milliseconds from send to delivery.", minimum=0),
          provider=string("Delivery provider, e.g. fcm, apns, ses.", max_length=ID)),
    event("notification_displayed", "notification", "A notification was shown to the user.",
          notification_id=req(NOTIFICATION_ID), notification_type=NOTIFICATION_TYPE, channel=CHANNEL),
    event("notification_clicked", "notification", "The user clicked a notification.",
          notification_id=req(NOTIFICATION_ID), notification_type=NOTIFICATION_TYPE, channel=req(CHANNEL),
          click_action=string("Action the click triggered, e.g. view_session.", max_length=ID),
          click_destination=string("Where the click led.", max_length=2048),
          time_since_delivery_seconds=SINCE_DELIVERY),
    event("notification_dismissed", "notification", "The user dismissed a notification.",
          notification_id=req(NOTIFICATION_ID), notification_type=NOTIFICATION_TYPE, channel=CHANNEL,
          dismiss_method=string("How it was dismissed.", enum={
              "swipe", "close_button", "timeout", "clear_all", "other"}),
          time_since_delivery_seconds=SINCE_DELIVERY),
    event("push_permission_request", "notification", "The user was asked for push permission.",
          result=string("The browser's or OS's answer.", enum={"granted", "denied", "default", "dismissed"}),
          prompt_context=string("Where the prompt was shown.", max_length=ID)),
    event("notification_preferences_update", "notification", "The user changed notification preferences.",
          channel=CHANNEL, notification_type=NOTIFICATION_TYPE, enabled=boolean("New state of the preference."),
          frequency=string("New frequency.", enum={"immediate", "daily", "weekly", "never"}),
          changes=obj("Every preference changed, old and new values.")),
    event("notification_opt_out", "notification", "The user opted out of notifications.",
          channel=CHANNEL, notification_type=described(NOTIFICATION_TYPE, "Type opted out of (absent: all)."),
          reason=REASON),
    event("notification_engagement_rate", "notification", "Periodic notification engagement figures.",
          engagement_rate_percent=req(number("Clicked per delivered, in percent.", minimum=0, maximum=100)),
          delivered_count=integer("Notifications delivered in the window.", minimum=0),
          clicked_count=integer("Notifications clicked in the window.", minimum=0),
          window_seconds=number("Length of the measurement window.", minimum=0),
          channel=CHANNEL, notification_type=NOTIFICATION_TYPE),
    event("notification_action_click", "notification", "The user clicked an action button of a notification.",
          notification_id=req(NOTIFICATION_ID), action_id=req(string("Action button id.", max_length=ID)),
          notification_type=NOTIFICATION_TYPE, channel=CHANNEL),
    event("notification_delivery_failure", "notification", "A notification could not be delivered.",
          notification_id=NOTIFICATION_ID, notification_type=NOTIFICATION_TYPE, channel=req(CHANNEL),
          reason=string("Why delivery failed.", enum={
              "invalid_token", "unsubscribed", "rate_limited", "provider_error", "timeout", "network",
              "payload_too_large", "other"}),
          error_code=string("Provider error code.", max_length=ID),
          retry_count=integer("Retries so far.", minimum=0), provider=string("Delivery provider.", max_length=ID)),
    event("notification_batch_operation", "notification", "A bulk action on notifications.",
          operation=req(string("The bulk action.", enum={
              "mark_read", "mark_unread", "delete", "archive", "dismiss", "send"})),
          count=req(integer("Notifications affected.", minimum=0)), channel=CHANNEL),
)

REALTIME: tuple[EventSpec, ...] = (
    event("connection_attempt", "realtime", "A realtime connection attempt started (opens its span).",
          connection_id=req(CONNECTION_ID), transport=req(TRANSPORT), attempt=ATTEMPT,
          endpoint=string("Endpoint path or URL.", max_length=2048)),
    event("connection_established", "realtime", "A realtime connection was established.",
          connection_id=req(CONNECTION_ID), transport=req(TRANSPORT), attempt=ATTEMPT,
          connect_time_ms=number("Milliseconds from attempt to established.", minimum=0)),
    event("connection_disconnected", "realtime", "A realtime connection closed (ends its span).",
          connection_id=req(CONNECTION_ID), transport=TRANSPORT, reason=REASON,
          close_code=integer("WebSocket close code.", minimum=1000, maximum=4999),
          was_clean=boolean("True for an orderly close."),
          duration_seconds=number("Seconds the connection was up.", minimum=0)),
    event("connection_error", "realtime", "A realtime connection failed (ends its span with an error).",
          connection_id=req(CONNECTION_ID), transport=TRANSPORT, reason=REASON,
          error_code=string("Error code.", max_length=ID), attempt=ATTEMPT),
    event("fallback_polling_activated", "realtime", "The client fell back to polling.",
          connection_id=req(CONNECTION_ID), from_transport=string("Transport that failed.", enum=TRANSPORTS),
          reason=REASON, failed_attempts=integer("Failed attempts before falling back.", minimum=0)),
    event("connection_latency", "realtime", "A latency measurement on a realtime connection.",
          connection_id=req(CONNECTION_ID), latency_ms=req(LATENCY_MS), transport=TRANSPORT),
    event("realtime_message", "realtime", "A message went over a realtime connection.",
          connection_id=req(CONNECTION_ID),
          message_type=string("Application message type, e.g. notification_update.", max_length=ID),
          bytes=described(BYTES, "Message size in bytes."),
          direction=string("Which way the message went.", enum={"inbound", "outbound"}), transport=TRANSPORT),
    event("connection_health_check", "realtime", "A health check on a realtime connection.",
          connection_id=req(CONNECTION_ID), healthy=req(boolean("Result of the check.")),
          latency_ms=LATENCY_MS, transport=TRANSPORT),
    event("connection_upgrade", "realtime", "A realtime connection changed transport (e.g. polling -> websocket).",
          connection_id=req(CONNECTION_ID), from_transport=string("Transport before.", enum=TRANSPORTS),
          to_transport=req(string("Transport after.", enum=TRANSPORTS))),
)
