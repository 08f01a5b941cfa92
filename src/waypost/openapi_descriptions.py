"""What each wire property means, for the OpenAPI document: keyed by its wire name, or by
"Schema.property" where the same name means something else there. A property is described
once here for every schema that carries it (a create body, an update body, an answer); a
`Field(description=...)` on the model wins. A test fails when a property has neither."""

from __future__ import annotations

PROPERTY_DESCRIPTIONS: dict[str, str] = {
    # --- the envelope and problems ---------------------------------------------------
    "meta": "Redox's envelope metadata: the payload format version, and paging links.",
    "payload": "The answer itself.",
    "version": "The payload format version; always 1.0.0.",
    "links": "Paging links (`self`, `next`, `prev`, `first`) as absolute URLs.",
    "page": "Offset paging, for routes that page by `_page`.",
    "currentPage": "The page this answer holds, from 1.",
    "pageType": "Always `offset`.",
    "pageSize": "Entries per page (`_count`).",
    "Problem.type": "A URN naming the kind of problem, e.g. urn:waypost:problem:validation.",
    "title": "The HTTP status in words.",
    "Problem.status": "The HTTP status code.",
    "detail": "What went wrong, in words, naming each field at fault.",
    "errors": "One entry per broken rule, each naming its field.",
    "field": "The field at fault, as a dotted path (e.g. cloudProviderSettings.settings."
    "containerName), a query parameter, or a header.",
    "FieldError.message": "The rule the field broke.",
    "MessagePayload.message": "What happened, in words.",
    "success": "Whether the call did what it was asked.",
    # --- common ----------------------------------------------------------------------
    "id": "The unique id (a uuid unless noted).",
    "name": "A human-readable name: 1 to 255 characters after trimming, one line.",
    "createdAt": "When it was created (ISO 8601, UTC).",
    "updatedAt": "When it last changed (ISO 8601, UTC).",
    "environment": "The environment it belongs to.",
    "environmentId": "The id of the environment it belongs to.",
    "environmentFlag": "The environment's kind: Production, Staging or Development. Systems "
    "exchange data only with the same kind.",
    "organization": "The organization's id (a number).",
    "Environment.organization": "The organization the environment belongs to.",
    "OrganizationMembership.organization": "The organization.",
    "EnvironmentMembership.environment": "The environment.",
    "OrganizationRef.id": "The organization's id (a number).",
    "NamedRef.id": "The id (a number for an organization, a uuid for an environment).",
    # --- destinations ----------------------------------------------------------------
    "destination": "The destination.",
    "destinations": "The destinations, in creation order.",
    "DestinationCreate.id": "Optional: the id to give the destination (a uuid); a taken id "
    "is a 409.",
    "authCredential": "The id of the auth credential Waypost uses to authenticate to the "
    "receiver, if any; it must be in the same environment.",
    "AuthCredentialPayload.authCredential": "The auth credential.",
    "endpoint": "The URL that receives messages: absolute http(s), at most 2048 characters. "
    "Production and staging applications must use HTTPS. A destination has an endpoint or "
    "cloudProviderSettings, never both.",
    "cloudProviderSettings": "For a cloud destination (Azure Blob Storage read by "
    "Databricks) instead of an endpoint. A destination's type is fixed at creation; on "
    "PATCH the keys given replace the stored ones.",
    "typeId": "The cloud provider: azure.",
    "productId": "The product: databricks.",
    "settings": "Configuration details for a Microsoft Azure + Databricks destination.",
    "storageAccountName": "The Azure storage account: 3 to 24 lowercase letters and digits.",
    "containerName": "The blob container: 3 to 63 lowercase letters, digits and single "
    "hyphens, starting and ending with a letter or digit.",
    "fileNamePrefix": "Prepended to each new file's name; a `/` puts files in a "
    "subdirectory. No leading `/`, no `..`, at most 512 characters; null on PATCH clears it.",
    "setupState": "The destination's setup state, as the client keeps it (a draft in "
    "progress), or null.",
    "step": "The current setup step, as the client names it (at most 255 characters).",
    "SetupState.destination": "A draft copy of the destination, kept as sent.",
    "verified": "Whether the receiver proved it is listening (`verify`); changing the "
    "endpoint or token sets it back to false, and messages wait until it is true again.",
    "verification": "The outcome of the last `verify`, or null when never verified since "
    "the endpoint or token last changed.",
    "VerificationOut.status": "verified or failed.",
    "checkedAt": "When the handshake ran (ISO 8601, UTC).",
    "VerificationOut.method": "The HTTP method the challenge was sent with.",
    "VerificationOut.error": "Why the handshake failed; absent on success.",
    "verificationMethod": "How the verification challenge is sent: GET or POST (POST when "
    "never set).",
    "hasVerificationToken": "Whether a verification token is set (the token itself is write-only).",
    "delivery": "How messages are delivered: ordering, parallelism and the retry limit.",
    "mode": "fifo (one lane per destination, or per orderingKey value) or unordered.",
    "concurrency": "Messages in flight at once.",
    "orderingKey": "fifo only: an RFC 6901 JSON pointer; messages with the same value there "
    "keep their order.",
    "maxRetrySeconds": "After that long a message fails; null: no limit.",
    "batch": "Cloud destinations in unordered mode: several messages per newline-delimited "
    "JSON file, `{fileNamePrefix}{DataModel}/{yyyy}/{mm}/{dd}/{first logId}-{count}.ndjson`; "
    "null: one file per message.",
    "maxMessages": "The most messages in one batch file (1 to 10,000).",
    "maxSeconds": "The longest a message waits for its batch file to fill (1 to 3,600 s).",
    "fileName": "Cloud destinations: the blob the message was written to, alone or as one "
    "line of a batch file.",
    # --- auth credentials ------------------------------------------------------------
    "credentials": "The environment's auth credentials, in creation order.",
    "authStrategy": "How Waypost authenticates to the receiver; `GET "
    "/authcredentials/strategies` lists each strategy's fields. Fixed at creation.",
    "grantType": "OAuth grant type: client_credentials.",
    "url": "The token URL: absolute http(s); https in Production and Staging.",
    "grantTypeName": "The name of the grant type parameter in the token request "
    "(default grant_type).",
    "clientIdName": "The name of the client id parameter (default client_id).",
    "clientSecretName": "The name of the client secret parameter (default client_secret).",
    "clientId": "The OAuth client id (at most 1024 characters).",
    "accessTokenName": "The name of the token in the token answer (default access_token).",
    "expiresFieldName": "The name of the lifetime in the token answer (default expires_in).",
    "audience": "Sent as `audience` in the token request.",
    "scopes": "The scopes to ask for, space-separated; sent as `scope`.",
    "contentType": "How the token request is encoded: application/x-www-form-urlencoded "
    "(the default) or application/json.",
    "noBasic": "true: client id and secret go in the body; false: in HTTP Basic.",
    "resource": "Sent as `resource` in the token request.",
    "customFieldName": "The name of one extra token request parameter.",
    "customFieldValue": "The value of that extra parameter.",
    "defaultExpirationSeconds": "The token lifetime assumed when the answer has none "
    "(otherwise 300 s).",
    "keyId": "The `kid` of the client assertion.",
    "headerName": "The HTTP header the API key is sent in.",
    "username": "The HTTP Basic user name (no `:`).",
    "hasClientSecret": "Whether a client secret is stored (write-only).",
    "hasPrivateKey": "Whether a private key is stored (write-only).",
    "hasApiKeyValue": "Whether an API key value is stored (write-only).",
    "hasPassword": "Whether a password is stored (write-only).",
    "hasAccountKey": "Whether a storage account key is stored (write-only).",
    "hasSasToken": "Whether a shared access signature is stored (write-only).",
    "strategies": "Each strategy Waypost can use, by name.",
    "availableFields": "The fields a credential of this strategy takes.",
    "requiredFields": "The fields it must have.",
    "secretFields": "Its write-only fields; answers show has<Field> instead.",
    # --- organizations and roles -----------------------------------------------------
    "environments": "The environments where you hold a role.",
    "memberships": "Each member and their role.",
    "role": "The role: by name, or by its stable id.",
    "RoleRef.id": "The role's stable id (the same on every installation).",
    "RoleRef.name": "The role's name: owner, admin or member for an organization; engineer, "
    "support or viewer for an environment.",
    "RoleOut.id": "The role's stable id.",
    "RoleOut.name": "The role's name.",
    "user": "The user.",
    "UserRef.id": "The user's id.",
    "UserRef.name": "Accepted as Redox's examples carry it; the id decides.",
    "MemberOut.id": "The user's id.",
    "fullname": "The user's full name.",
    "lowercaseEmail": "The user's email address, in lowercase.",
    # --- audit -----------------------------------------------------------------------
    "results": "The events, newest first.",
    "organizationId": "The organization's id (a number).",
    "userId": "The user who acted; null for the command line or a source.",
    "requestIp": "The address the request came from.",
    "route": "The route called, as METHOD path.",
    "AuditEventOut.type": "What happened, e.g. destination-created (the `actionType` filter "
    "takes these).",
    "AuditEventOut.status": "successful, or failed for a refused change.",
    "AuditEventOut.id": "The event's id.",
    "details": "What changed; a secret appears only as `changed`.",
    # --- sources, API keys and tokens ------------------------------------------------
    "source": "The source.",
    "sources": "The environment's sources, in creation order.",
    "hasSecret": "Whether the source has a legacy secret.",
    "apikey": "The OAuth API key.",
    "apikeys": "The environment's OAuth API keys.",
    "jwksURL": "Where the key's public keys (a JWKS) are published.",
    "jwkSet": "The key's public keys inline: {keys: [...]}, each with a kid.",
    "ApiKeyCreate.name": "A human-readable name: 1 to 255 characters after trimming.",
    "accessToken": "The bearer token for the send API.",
    "refreshToken": "A single-use token for a new token pair (`/auth/refreshToken`).",
    "access_token": "The bearer token.",
    "token_type": "Always Bearer.",
    "expires_in": "Seconds the token is valid for.",
    "TokenError.error": "OAuth's error code, e.g. invalid_request or invalid_client.",
    "error_description": "What went wrong, in words.",
    "error_uri": "Always empty.",
    # --- subscriptions ---------------------------------------------------------------
    "subscription": "The subscription.",
    "subscriptions": "The subscriptions, in creation order.",
    "SubscriptionCreate.source": "The source whose messages are routed.",
    "SubscriptionCreate.destination": "The destination they are routed to.",
    "SubscriptionOut.source": "The source whose messages are routed.",
    "SubscriptionOut.destination": "The destination they are routed to.",
    "IdRef.id": "The id.",
    "dataModel": "The Redox data model, e.g. PatientAdmin.",
    # --- logs ------------------------------------------------------------------------
    "logs": "The logs, newest first.",
    "LogOut.id": "The log's id.",
    "LogDetailOut.id": "The log's id.",
    "eventType": "The Redox event type, e.g. Arrival.",
    "LogOut.status": "pending, succeeded, failed or filtered.",
    "LogDetailOut.status": "pending, succeeded, failed or filtered.",
    "LogSearch.status": "Only logs with this status.",
    "LogOut.type": "The log's type, e.g. request.",
    "LogDetailOut.type": "The log's type, e.g. request.",
    "LogSearch.type": "Only logs of this type.",
    "test": "Whether the message was marked Meta.Test.",
    "LogOut.source": "The source that sent the message.",
    "LogDetailOut.source": "The source that sent the message.",
    "LogOut.destination": "The destination it was routed to.",
    "LogDetailOut.destination": "The destination it was routed to.",
    "attempts": "The delivery attempts.",
    "total": "How many attempts were made.",
    "latest": "The most recent attempt, or null.",
    "AttemptOut.id": "The attempt's id.",
    "attemptAt": "When the attempt started (ISO 8601, UTC).",
    "AttemptOut.status": "succeeded, failed or pending.",
    "httpStatus": "The receiver's HTTP status, if it answered.",
    "AttemptOut.error": "Why the attempt failed, in words.",
    "durationMs": "How long the attempt took, in milliseconds.",
    "sourceId": "Only logs from this source.",
    "destinationId": "Only logs to this destination.",
    "createdAfter": "Only logs created at or after this time (ISO 8601).",
    "createdBefore": "Only logs created at or before this time (ISO 8601).",
    "updatedAfter": "Only logs updated at or after this time (ISO 8601).",
    "updatedBefore": "Only logs updated at or before this time (ISO 8601).",
    "LogSearch.eventType": "Only logs of this event type.",
    "LogSearch.dataModel": "Only logs of this data model.",
}

_ENGINEER = "Any environment role reads; only an `engineer` of its environment changes it."
_MANAGERS = "Owners and admins of the organization only."

# An operation's description, by "METHOD path", where its route gives none.
OPERATION_DESCRIPTIONS: dict[str, str] = {
    "POST /platform/v1/environments/{environmentId}/destinations": "Creates a URL "
    "destination (`endpoint`) or a cloud destination (`cloudProviderSettings`); only `name` "
    "is required. It starts unverified: messages wait until `verify` succeeds. Engineers "
    "of the environment only.",
    "GET /platform/v1/environments/{environmentId}/destinations": "Every destination of the "
    "environment, in creation order, up to `_count` (1000 by default); `meta.links.next` "
    "pages further with `_cursor`. " + _ENGINEER,
    "GET /platform/v1/destinations/{destinationId}": "One destination, with its "
    "verification state and effective delivery settings. " + _ENGINEER,
    "PATCH /platform/v1/destinations/{destinationId}": "Partial: absent fields keep their "
    "value, null clears an optional one. A new endpoint or verification token sets "
    "`verified` back to false; a cloud destination's `cloudProviderSettings` change in "
    "part. A destination's type (URL or cloud) is fixed at creation.",
    "GET /platform/v1/authcredentials/strategies": "Each strategy with its "
    "`availableFields`, `requiredFields` and `secretFields`: what a credential of that "
    "strategy takes.",
    "GET /platform/v1/environments/{environmentId}/authcredentials": "The environment's "
    "auth credentials, in creation order; secrets show only as has<Field>. " + _ENGINEER,
    "GET /platform/v1/authcredentials/{authCredentialId}": "One auth credential; secrets "
    "show only as has<Field>. " + _ENGINEER,
    "PATCH /platform/v1/authcredentials/{authCredentialId}": "Partial: absent fields keep "
    "their value, null clears an optional one, a secret sent replaces the stored one. The "
    "strategy and the environment cannot change. The next use fetches a fresh token.",
    "GET /platform/v1/organizations/{organizationId}/environments": "Only the environments "
    "where you hold a role.",
    "GET /platform/v1/organizations/{organizationId}/role-assignment": "Every member of the "
    "organization with their organization role. " + _MANAGERS,
    "PUT /platform/v1/organizations/{organizationId}/role-assignment": "Sets a member's "
    "organization role (owner, admin or member); an organization always keeps at least one "
    "owner. Owners only.",
    "GET /platform/v1/environments/{environmentId}/role-assignment": "Every member with a "
    "role in the environment. " + _MANAGERS,
    "POST /platform/v1/environments/{environmentId}/role-assignment": "Gives a member of the "
    "organization a role (engineer, support or viewer) in the environment; 409 if they "
    "already have one. " + _MANAGERS,
    "PUT /platform/v1/environments/{environmentId}/role-assignment": "Changes the role a "
    "member holds in the environment; 409 if they hold none. " + _MANAGERS,
    "DELETE /platform/v1/environments/{environmentId}/role-assignment": "Removes a member's "
    "role in the environment; they stay in the organization. " + _MANAGERS,
    "GET /platform/v1/organizations/{organizationId}/audit-events": "Every change made "
    "through the API or the command line, newest first, filtered by user, time, status and "
    "`actionType` (repeat it for several); offset paging with `_page` and `_count` (at "
    "most 50). " + _MANAGERS,
    "POST /v2/auth/token": "Redox's JWT flow: a client assertion signed with a registered "
    "key (a user's API key, or a source's OAuth API key) for a bearer token valid five "
    "minutes. Errors answer OAuth's shape (`error`, `error_description`, `error_uri`).",
    "POST /platform/v1/environments/{environmentId}/sources": "A source sends messages to "
    "`/endpoint`. Its legacy `apiKey` and `secret` sign in at `/auth/authenticate`; the "
    "secret is in this answer only. Engineers of the environment only.",
    "GET /platform/v1/environments/{environmentId}/sources": "The environment's sources, "
    "OAuth API keys included, in creation order. " + _ENGINEER,
    "GET /platform/v1/sources/{sourceId}": "One source. " + _ENGINEER,
    "PATCH /platform/v1/sources/{sourceId}": "Renames a source; absent fields keep their "
    "values. Engineers of the environment only.",
    "DELETE /platform/v1/sources/{sourceId}": "Deletes the source; every token it holds "
    "stops working at once. Engineers of the environment only.",
    "POST /platform/v1/sources/{sourceId}/secret": "A new legacy secret, shown in this "
    "answer only; the old one keeps working for 24 hours so senders can switch. "
    "Engineers of the environment only.",
    "POST /platform/v1/environments/{environmentId}/apikeys": "An OAuth API key is a source "
    "that signs in with a JWT (`/v2/auth/token`, `/oauth/token`) checked against its public "
    "keys: inline (`jwkSet`) or at a URL (`jwksURL`). Engineers of the environment only.",
    "GET /platform/v1/environments/{environmentId}/apikeys": "The environment's OAuth API "
    "keys, in creation order. " + _ENGINEER,
    "GET /platform/v1/apikeys/{apikeyId}": "One OAuth API key. " + _ENGINEER,
    "DELETE /platform/v1/apikeys/{apikeyId}": "Deletes the key; its tokens stop working at "
    "once. Not restorable. Engineers of the environment only.",
    "POST /auth/authenticate": "Redox's legacy source sign-in: `apiKey` and `secret` for an "
    "access token valid 24 hours and a single-use refresh token. Takes JSON (or a form).",
    "POST /auth/refreshToken": "Trades a refresh token, once, for a new token pair.",
    "POST /oauth/token": "Redox's Source Auth v2: a client assertion signed with an OAuth "
    "API key's private key for a send-API token valid five minutes.",
    "GET /platform/v1/environments/{environmentId}/subscriptions": "The environment's "
    "subscriptions in creation order, filtered by `sourceId`, `destinationId` and "
    "`dataModel`; `_count` and `_cursor` page. " + _ENGINEER,
    "GET /platform/v1/organizations/{organizationId}/subscriptions": "The subscriptions of "
    "every environment where you hold a role.",
    "GET /platform/v1/subscriptions/{subscriptionId}": "One subscription. " + _ENGINEER,
    "DELETE /platform/v1/subscriptions/{subscriptionId}": "Stops routing; messages already "
    "accepted are still delivered. Engineers of the environment only.",
    "GET /health": "Answers 200 while the process runs, without touching the database: for "
    "liveness probes.",
    "GET /ready": "Answers 200 when the database answers, 503 otherwise: for readiness "
    "probes and load balancers.",
}
