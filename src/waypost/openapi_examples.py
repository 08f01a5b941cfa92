# ruff: noqa: E501 - example data: long ids and URLs stay on one line
"""Request and response examples for every operation of the OpenAPI document, keyed by
"METHOD path". Taken from a real run of this server and shaped after Redox's documentation
examples (its example ids, names and secrets; https://docs.redoxengine.com); a test checks
that each one validates against the model its route takes or answers with.

`request`: the body (None when the route takes none); `status` and `response`: the success
answer.
"""

from __future__ import annotations

from typing import Any

from waypost.credentials.strategies import STRATEGIES

EXAMPLES: dict[str, dict[str, Any]] = {
    "POST /platform/v1/authcredentials": {
        "request": {
            "environmentId": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
            "name": "EHR OAuth",
            "authStrategy": "OAuth_2.0_2-legged",
            "grantType": "client_credentials",
            "url": "https://auth.ehr.example.org/oauth2/token",
            "clientId": "waypost",
            "clientSecret": "zzzSecret-assigned-by-authorization-server!!",
            "scopes": "system/*.write",
        },
        "status": 201,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "authCredential": {
                    "id": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                    "name": "EHR OAuth",
                    "environmentId": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                    "organization": 1,
                    "createdAt": "2026-11-30T07:16:35.830616Z",
                    "updatedAt": "2026-11-30T07:16:35.830616Z",
                    "authStrategy": "OAuth_2.0_2-legged",
                    "grantType": "client_credentials",
                    "url": "https://auth.ehr.example.org/oauth2/token",
                    "grantTypeName": "grant_type",
                    "clientIdName": "client_id",
                    "clientSecretName": "client_secret",
                    "clientId": "waypost",
                    "accessTokenName": "access_token",
                    "expiresFieldName": "expires_in",
                    "audience": None,
                    "scopes": "system/*.write",
                    "contentType": "application/x-www-form-urlencoded",
                    "noBasic": False,
                    "resource": None,
                    "customFieldName": None,
                    "customFieldValue": None,
                    "defaultExpirationSeconds": None,
                    "hasClientSecret": True,
                }
            },
        },
    },
    "GET /platform/v1/authcredentials/strategies": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            # Written from the strategies themselves, so the example cannot drift.
            "payload": {"strategies": {name: s.describe() for name, s in STRATEGIES.items()}},
        },
    },
    "GET /platform/v1/environments/{environmentId}/authcredentials": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "credentials": [
                    {
                        "id": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                        "name": "EHR OAuth",
                        "environmentId": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "organization": 1,
                        "createdAt": "2026-11-30T07:16:35.830616Z",
                        "updatedAt": "2026-11-30T07:16:35.830616Z",
                        "authStrategy": "OAuth_2.0_2-legged",
                        "grantType": "client_credentials",
                        "url": "https://auth.ehr.example.org/oauth2/token",
                        "grantTypeName": "grant_type",
                        "clientIdName": "client_id",
                        "clientSecretName": "client_secret",
                        "clientId": "waypost",
                        "accessTokenName": "access_token",
                        "expiresFieldName": "expires_in",
                        "audience": None,
                        "scopes": "system/*.write",
                        "contentType": "application/x-www-form-urlencoded",
                        "noBasic": False,
                        "resource": None,
                        "customFieldName": None,
                        "customFieldValue": None,
                        "defaultExpirationSeconds": None,
                        "hasClientSecret": True,
                    }
                ]
            },
        },
    },
    "GET /platform/v1/authcredentials/{authCredentialId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "authCredential": {
                    "id": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                    "name": "EHR OAuth",
                    "environmentId": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                    "organization": 1,
                    "createdAt": "2026-11-30T07:16:35.830616Z",
                    "updatedAt": "2026-11-30T07:16:35.830616Z",
                    "authStrategy": "OAuth_2.0_2-legged",
                    "grantType": "client_credentials",
                    "url": "https://auth.ehr.example.org/oauth2/token",
                    "grantTypeName": "grant_type",
                    "clientIdName": "client_id",
                    "clientSecretName": "client_secret",
                    "clientId": "waypost",
                    "accessTokenName": "access_token",
                    "expiresFieldName": "expires_in",
                    "audience": None,
                    "scopes": "system/*.write",
                    "contentType": "application/x-www-form-urlencoded",
                    "noBasic": False,
                    "resource": None,
                    "customFieldName": None,
                    "customFieldValue": None,
                    "defaultExpirationSeconds": None,
                    "hasClientSecret": True,
                }
            },
        },
    },
    "PATCH /platform/v1/authcredentials/{authCredentialId}": {
        "request": {"scopes": "system/*.read system/*.write"},
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "authCredential": {
                    "id": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                    "name": "EHR OAuth",
                    "environmentId": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                    "organization": 1,
                    "createdAt": "2026-11-30T07:16:35.830616Z",
                    "updatedAt": "2026-11-30T07:16:35.877589Z",
                    "authStrategy": "OAuth_2.0_2-legged",
                    "grantType": "client_credentials",
                    "url": "https://auth.ehr.example.org/oauth2/token",
                    "grantTypeName": "grant_type",
                    "clientIdName": "client_id",
                    "clientSecretName": "client_secret",
                    "clientId": "waypost",
                    "accessTokenName": "access_token",
                    "expiresFieldName": "expires_in",
                    "audience": None,
                    "scopes": "system/*.read system/*.write",
                    "contentType": "application/x-www-form-urlencoded",
                    "noBasic": False,
                    "resource": None,
                    "customFieldName": None,
                    "customFieldValue": None,
                    "defaultExpirationSeconds": None,
                    "hasClientSecret": True,
                }
            },
        },
    },
    "POST /platform/v1/authcredentials/{authCredentialId}/test": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "success": False,
                "status": None,
                "error": "could not reach the token server: the name auth.ehr.example.org could not be resolved",
                "expiresIn": None,
            },
        },
    },
    "POST /platform/v1/environments/{environmentId}/destinations": {
        "request": {
            "name": "EHR feed",
            "endpoint": "https://receiver.example.org/redox",
            "verificationToken": "s3cr3t-token",
            "authCredential": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
        },
        "status": 201,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "destination": {
                    "id": "af394f14-b34a-464f-8d24-895f370af4c9",
                    "name": "EHR feed",
                    "authCredential": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                    "endpoint": "https://receiver.example.org/redox",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "cloudProviderSettings": None,
                    "setupState": None,
                    "verified": False,
                    "verification": None,
                    "verificationMethod": None,
                    "hasVerificationToken": True,
                    "delivery": {
                        "mode": "fifo",
                        "concurrency": 1,
                        "orderingKey": None,
                        "maxRetrySeconds": None,
                        "batch": None,
                    },
                    "createdAt": "2026-11-30T07:16:35.886038Z",
                    "updatedAt": "2026-11-30T07:16:35.886038Z",
                }
            },
        },
    },
    "GET /platform/v1/environments/{environmentId}/destinations": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "destinations": [
                    {
                        "id": "af394f14-b34a-464f-8d24-895f370af4c9",
                        "name": "EHR feed",
                        "authCredential": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                        "endpoint": "https://receiver.example.org/redox",
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "environmentFlag": "Development",
                        },
                        "cloudProviderSettings": None,
                        "setupState": None,
                        "verified": False,
                        "verification": None,
                        "verificationMethod": None,
                        "hasVerificationToken": True,
                        "delivery": {
                            "mode": "fifo",
                            "concurrency": 1,
                            "orderingKey": None,
                            "maxRetrySeconds": None,
                            "batch": None,
                        },
                        "createdAt": "2026-11-30T07:16:35.886038Z",
                        "updatedAt": "2026-11-30T07:16:35.886038Z",
                    }
                ]
            },
        },
    },
    "GET /platform/v1/destinations/{destinationId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "destination": {
                    "id": "af394f14-b34a-464f-8d24-895f370af4c9",
                    "name": "EHR feed",
                    "authCredential": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                    "endpoint": "https://receiver.example.org/redox",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "cloudProviderSettings": None,
                    "setupState": None,
                    "verified": False,
                    "verification": None,
                    "verificationMethod": None,
                    "hasVerificationToken": True,
                    "delivery": {
                        "mode": "fifo",
                        "concurrency": 1,
                        "orderingKey": None,
                        "maxRetrySeconds": None,
                        "batch": None,
                    },
                    "createdAt": "2026-11-30T07:16:35.886038Z",
                    "updatedAt": "2026-11-30T07:16:35.886038Z",
                }
            },
        },
    },
    "PATCH /platform/v1/destinations/{destinationId}": {
        "request": {"name": "EHR feed (renamed)"},
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "destination": {
                    "id": "af394f14-b34a-464f-8d24-895f370af4c9",
                    "name": "EHR feed (renamed)",
                    "authCredential": "95dc8346-96b6-4721-88bf-bd96d3ac7a91",
                    "endpoint": "https://receiver.example.org/redox",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "cloudProviderSettings": None,
                    "setupState": None,
                    "verified": False,
                    "verification": None,
                    "verificationMethod": None,
                    "hasVerificationToken": True,
                    "delivery": {
                        "mode": "fifo",
                        "concurrency": 1,
                        "orderingKey": None,
                        "maxRetrySeconds": None,
                        "batch": None,
                    },
                    "createdAt": "2026-11-30T07:16:35.886038Z",
                    "updatedAt": "2026-11-30T07:16:35.897074Z",
                }
            },
        },
    },
    "POST /platform/v1/destinations/{destinationId}/verify": {
        "request": {"verificationMethod": "POST"},
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "destination": {
                    "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                    "name": "EHR feed",
                    "authCredential": None,
                    "endpoint": "https://receiver.example.org/redox",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "cloudProviderSettings": None,
                    "setupState": None,
                    "verified": True,
                    "verification": {
                        "status": "verified",
                        "checkedAt": "2026-11-30T07:16:35.905473Z",
                        "method": "POST",
                    },
                    "verificationMethod": "POST",
                    "hasVerificationToken": True,
                    "delivery": {
                        "mode": "fifo",
                        "concurrency": 1,
                        "orderingKey": None,
                        "maxRetrySeconds": None,
                        "batch": None,
                    },
                    "createdAt": "2026-11-30T07:16:35.899664Z",
                    "updatedAt": "2026-11-30T07:16:35.902318Z",
                }
            },
        },
    },
    "POST /platform/v1/environments/{environmentId}/sources": {
        "request": {"name": "EHR ADT feed"},
        "status": 201,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "source": {
                    "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "name": "EHR ADT feed",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "hasSecret": True,
                    "createdAt": "2026-11-30T07:16:35.992494Z",
                    "updatedAt": "2026-11-30T07:16:35.992494Z",
                    "secret": "kNf4E31bMjNlfolecgwVs9fQ8zsJvkHPA8xcgIJ5nFafBIrrIkmzHW3vZaHyQWFi",
                }
            },
        },
    },
    "GET /platform/v1/environments/{environmentId}/sources": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "sources": [
                    {
                        "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                        "name": "EHR ADT feed",
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "environmentFlag": "Development",
                        },
                        "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                        "hasSecret": True,
                        "createdAt": "2026-11-30T07:16:35.992494Z",
                        "updatedAt": "2026-11-30T07:16:35.992494Z",
                    }
                ]
            },
        },
    },
    "GET /platform/v1/sources/{sourceId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "source": {
                    "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "name": "EHR ADT feed",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "hasSecret": True,
                    "createdAt": "2026-11-30T07:16:35.992494Z",
                    "updatedAt": "2026-11-30T07:16:35.992494Z",
                }
            },
        },
    },
    "PATCH /platform/v1/sources/{sourceId}": {
        "request": {"name": "EHR ADT feed (main)"},
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "source": {
                    "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "name": "EHR ADT feed (main)",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "hasSecret": True,
                    "createdAt": "2026-11-30T07:16:35.992494Z",
                    "updatedAt": "2026-11-30T07:16:36.009948Z",
                }
            },
        },
    },
    "POST /platform/v1/sources/{sourceId}/secret": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "source": {
                    "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "name": "EHR ADT feed (main)",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "hasSecret": True,
                    "createdAt": "2026-11-30T07:16:35.992494Z",
                    "updatedAt": "2026-11-30T07:16:36.012775Z",
                    "secret": "o5dTZwjdyt-9gB7AmoCijTFQGXCO30ZrMlISpU2JpObxzLv6AB22VA6fGFw27QZ4",
                }
            },
        },
    },
    "POST /platform/v1/environments/{environmentId}/apikeys": {
        "request": {
            "name": "FHIR client",
            "jwksURL": "https://client.example.org/.well-known/jwks.json",
        },
        "status": 201,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "apikey": {
                    "id": "0b6f4c2e-0005-4a8e-9c1d-5e7f3a2b0005",
                    "name": "FHIR client",
                    "jwksURL": "https://client.example.org/.well-known/jwks.json",
                    "jwkSet": None,
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "createdAt": "2026-11-30T07:16:36.015588Z",
                    "updatedAt": "2026-11-30T07:16:36.015588Z",
                }
            },
        },
    },
    "GET /platform/v1/environments/{environmentId}/apikeys": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "apikeys": [
                    {
                        "id": "0b6f4c2e-0005-4a8e-9c1d-5e7f3a2b0005",
                        "name": "FHIR client",
                        "jwksURL": "https://client.example.org/.well-known/jwks.json",
                        "jwkSet": None,
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "environmentFlag": "Development",
                        },
                        "createdAt": "2026-11-30T07:16:36.015588Z",
                        "updatedAt": "2026-11-30T07:16:36.015588Z",
                    }
                ]
            },
        },
    },
    "GET /platform/v1/apikeys/{apikeyId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "apikey": {
                    "id": "0b6f4c2e-0005-4a8e-9c1d-5e7f3a2b0005",
                    "name": "FHIR client",
                    "jwksURL": "https://client.example.org/.well-known/jwks.json",
                    "jwkSet": None,
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "createdAt": "2026-11-30T07:16:36.015588Z",
                    "updatedAt": "2026-11-30T07:16:36.015588Z",
                }
            },
        },
    },
    "POST /platform/v1/environments/{environmentId}/subscriptions": {
        "request": {
            "source": {"id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004"},
            "destination": {"id": "2e73f864-a0e9-4764-a7d5-91fe5836db22"},
            "dataModel": "PatientAdmin",
        },
        "status": 201,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "subscription": {
                    "id": "0b6f4c2e-0006-4a8e-9c1d-5e7f3a2b0006",
                    "source": {
                        "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                        "name": "EHR ADT feed (main)",
                    },
                    "destination": {
                        "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                        "name": "EHR feed",
                    },
                    "dataModel": "PatientAdmin",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "createdAt": "2026-11-30T07:16:36.043476Z",
                }
            },
        },
    },
    "GET /platform/v1/environments/{environmentId}/subscriptions": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "subscriptions": [
                    {
                        "id": "0b6f4c2e-0006-4a8e-9c1d-5e7f3a2b0006",
                        "source": {
                            "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                            "name": "EHR ADT feed (main)",
                        },
                        "destination": {
                            "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                            "name": "EHR feed",
                        },
                        "dataModel": "PatientAdmin",
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "environmentFlag": "Development",
                        },
                        "createdAt": "2026-11-30T07:16:36.043476Z",
                    }
                ]
            },
        },
    },
    "GET /platform/v1/organizations/{organizationId}/subscriptions": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "subscriptions": [
                    {
                        "id": "0b6f4c2e-0006-4a8e-9c1d-5e7f3a2b0006",
                        "source": {
                            "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                            "name": "EHR ADT feed (main)",
                        },
                        "destination": {
                            "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                            "name": "EHR feed",
                        },
                        "dataModel": "PatientAdmin",
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "environmentFlag": "Development",
                        },
                        "createdAt": "2026-11-30T07:16:36.043476Z",
                    }
                ]
            },
        },
    },
    "GET /platform/v0/organizations/{organizationId}/subscriptions": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "subscriptions": [
                    {
                        "id": "0b6f4c2e-0006-4a8e-9c1d-5e7f3a2b0006",
                        "source": {
                            "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                            "name": "EHR ADT feed (main)",
                        },
                        "destination": {
                            "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                            "name": "EHR feed",
                        },
                        "dataModel": "PatientAdmin",
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "environmentFlag": "Development",
                        },
                        "createdAt": "2026-11-30T07:16:36.043476Z",
                    }
                ]
            },
        },
    },
    "GET /platform/v1/subscriptions/{subscriptionId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "subscription": {
                    "id": "0b6f4c2e-0006-4a8e-9c1d-5e7f3a2b0006",
                    "source": {
                        "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                        "name": "EHR ADT feed (main)",
                    },
                    "destination": {
                        "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                        "name": "EHR feed",
                    },
                    "dataModel": "PatientAdmin",
                    "environment": {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "environmentFlag": "Development",
                    },
                    "createdAt": "2026-11-30T07:16:36.043476Z",
                }
            },
        },
    },
    "POST /auth/authenticate": {
        "request": {
            "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
            "secret": "o5dTZwjdyt-9gB7AmoCijTFQGXCO30ZrMlISpU2JpObxzLv6AB22VA6fGFw27QZ4",
        },
        "status": 200,
        "response": {
            "accessToken": "wp_7yTp37wf5W4u3cvMX29GYmOTI90hFP2vCb3-cOmVhuY",
            "expires": "2026-12-01T07:16:36.116Z",
            "refreshToken": "wp_MpW7w0Z8OxVWBuziEieVHOXDmNfLtKtYaimXBqUYD7I",
        },
    },
    "POST /auth/refreshToken": {
        "request": {
            "apiKey": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
            "refreshToken": "wp_MpW7w0Z8OxVWBuziEieVHOXDmNfLtKtYaimXBqUYD7I",
        },
        "status": 200,
        "response": {
            "accessToken": "wp_QzdzaIEEH4in4tvye-G_ki8YilCun2X_O6Y0hzgyPbU",
            "expires": "2026-12-01T07:16:36.140Z",
            "refreshToken": "wp_7Cx1g8A2JhtQ_D0kgSlOu_Qu5BvjooWIk7GmM9Bqm70",
        },
    },
    "POST /endpoint": {
        "request": {
            "Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival", "Test": True},
            "Patient": {"Identifiers": [{"ID": "0000000001", "IDType": "MR"}]},
        },
        "status": 200,
        "response": {
            "Meta": {
                "DataModel": "PatientAdmin",
                "EventType": "Arrival",
                "Test": True,
                "Source": {
                    "ID": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                    "Name": "EHR ADT feed (main)",
                },
                "Destinations": [
                    {"ID": "2e73f864-a0e9-4764-a7d5-91fe5836db22", "Name": "EHR feed"}
                ],
                "Logs": [
                    {
                        "ID": "0b6f4c2e-0007-4a8e-9c1d-5e7f3a2b0007",
                        "AttemptID": "0b6f4c2e-0008-4a8e-9c1d-5e7f3a2b0008",
                    }
                ],
            }
        },
    },
    "POST /platform/v1/environments/{environmentId}/logs/search/metadata": {
        "request": {"dataModel": "PatientAdmin", "status": "pending"},
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "logs": [
                    {
                        "id": "0b6f4c2e-0007-4a8e-9c1d-5e7f3a2b0007",
                        "type": "send",
                        "status": "pending",
                        "dataModel": "PatientAdmin",
                        "eventType": "Arrival",
                        "test": True,
                        "source": {
                            "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                            "name": "EHR ADT feed (main)",
                        },
                        "destination": {
                            "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                            "name": "EHR feed",
                        },
                        "createdAt": "2026-11-30T07:16:36.182580Z",
                        "updatedAt": "2026-11-30T07:16:36.182580Z",
                        "attempts": {"total": 0, "latest": None},
                    }
                ]
            },
        },
    },
    "GET /platform/v1/organizations/{organizationId}/logs/{logId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "result": {
                    "id": "0b6f4c2e-0007-4a8e-9c1d-5e7f3a2b0007",
                    "type": "send",
                    "status": "pending",
                    "dataModel": "PatientAdmin",
                    "eventType": "Arrival",
                    "test": True,
                    "source": {
                        "id": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                        "name": "EHR ADT feed (main)",
                    },
                    "destination": {
                        "id": "2e73f864-a0e9-4764-a7d5-91fe5836db22",
                        "name": "EHR feed",
                    },
                    "createdAt": "2026-11-30T07:16:36.182580Z",
                    "updatedAt": "2026-11-30T07:16:36.182580Z",
                    "attempts": {"total": 0, "latest": None, "all": []},
                    "payload": {
                        "Meta": {
                            "DataModel": "PatientAdmin",
                            "EventType": "Arrival",
                            "Test": True,
                            "Source": {
                                "ID": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                                "Name": "EHR ADT feed (main)",
                            },
                            "Destinations": [
                                {"ID": "2e73f864-a0e9-4764-a7d5-91fe5836db22", "Name": "EHR feed"}
                            ],
                            "Logs": [
                                {"ID": "0b6f4c2e-0007-4a8e-9c1d-5e7f3a2b0007", "AttemptID": None}
                            ],
                        },
                        "Patient": {"Identifiers": [{"ID": "0000000001", "IDType": "MR"}]},
                    },
                }
            },
        },
    },
    "GET /platform/v1/organizations/{organizationId}/environments": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "environments": [
                    {
                        "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                        "name": "Development",
                        "environmentFlag": "Development",
                        "organization": {"id": 1},
                    },
                    {
                        "id": "0b6f4c2e-0009-4a8e-9c1d-5e7f3a2b0009",
                        "name": "Staging",
                        "environmentFlag": "Staging",
                        "organization": {"id": 1},
                    },
                    {
                        "id": "0b6f4c2e-0010-4a8e-9c1d-5e7f3a2b0010",
                        "name": "Production",
                        "environmentFlag": "Production",
                        "organization": {"id": 1},
                    },
                ]
            },
        },
    },
    "GET /platform/v1/organizations/{organizationId}/role-assignment": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "memberships": [
                    {
                        "organization": {"id": 1, "name": "Acme Health"},
                        "role": {"id": "0b6f4c2e-0011-4a8e-9c1d-5e7f3a2b0011", "name": "owner"},
                        "user": {
                            "id": "0b6f4c2e-0012-4a8e-9c1d-5e7f3a2b0012",
                            "fullname": "owner@acme-health.example",
                            "lowercaseEmail": "owner@acme-health.example",
                        },
                    }
                ]
            },
        },
    },
    "GET /platform/v1/environments/{environmentId}/role-assignment": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "memberships": [
                    {
                        "environment": {
                            "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                            "name": "Development",
                        },
                        "role": {"id": "0b6f4c2e-0014-4a8e-9c1d-5e7f3a2b0014", "name": "engineer"},
                        "user": {
                            "id": "0b6f4c2e-0012-4a8e-9c1d-5e7f3a2b0012",
                            "fullname": "owner@acme-health.example",
                            "lowercaseEmail": "owner@acme-health.example",
                        },
                    }
                ]
            },
        },
    },
    "GET /platform/v1/organizations/{organizationId}/audit-events": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {
                "version": "1.0.0",
                "page": {
                    "currentPage": 1,
                    "pageType": "offset",
                    "pageSize": 2,
                    "links": {
                        "self": "https://waypost.example.org/platform/v1/organizations/1/audit-events?_count=2",
                        "next": "https://waypost.example.org/platform/v1/organizations/1/audit-events?_count=2&_page=2",
                    },
                },
            },
            "payload": {
                "results": [
                    {
                        "id": "0b6f4c2e-0015-4a8e-9c1d-5e7f3a2b0015",
                        "organizationId": 1,
                        "userId": None,
                        "requestIp": "203.0.113.7",
                        "route": "POST /auth/refreshToken",
                        "createdAt": "2026-11-30T07:16:36.141364Z",
                        "type": "source-token-issued",
                        "status": "successful",
                        "details": {
                            "sourceId": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                            "expiresAt": "2026-12-01T07:16:36.140759Z",
                        },
                    },
                    {
                        "id": "0b6f4c2e-0016-4a8e-9c1d-5e7f3a2b0016",
                        "organizationId": 1,
                        "userId": None,
                        "requestIp": "203.0.113.7",
                        "route": "POST /auth/authenticate",
                        "createdAt": "2026-11-30T07:16:36.117103Z",
                        "type": "source-token-issued",
                        "status": "successful",
                        "details": {
                            "sourceId": "0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004",
                            "expiresAt": "2026-12-01T07:16:36.116186Z",
                        },
                    },
                ]
            },
        },
    },
    "DELETE /platform/v1/subscriptions/{subscriptionId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "message": "Subscription 0b6f4c2e-0006-4a8e-9c1d-5e7f3a2b0006 was deleted; nothing more is routed by it."
            },
        },
    },
    "DELETE /platform/v1/destinations/{destinationId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "message": "Destination 2e73f864-a0e9-4764-a7d5-91fe5836db22 was deleted and no longer exists in its environment."
            },
        },
    },
    "DELETE /platform/v1/authcredentials/{authCredentialId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "message": "Auth credential id [95dc8346-96b6-4721-88bf-bd96d3ac7a91] was successfully deleted."
            },
        },
    },
    "DELETE /platform/v1/apikeys/{apikeyId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "message": "The OAuth API key 0b6f4c2e-0005-4a8e-9c1d-5e7f3a2b0005 was deleted; its tokens no longer work."
            },
        },
    },
    "DELETE /platform/v1/sources/{sourceId}": {
        "request": None,
        "status": 200,
        "response": {
            "meta": {"version": "1.0.0"},
            "payload": {
                "message": "The source 0b6f4c2e-0004-4a8e-9c1d-5e7f3a2b0004 was deleted; its tokens no longer work."
            },
        },
    },
}

_TOKEN_FORM = {
    "grant_type": "client_credentials",
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "client_assertion": "eyJhbGciOiJFUzM4NCIsImtpZCI6IjEifQ.eyJpc3MiOiI0OTdmNmVjYSJ9.c2lnbmF0dXJl",
}
_SUCCESS = {"meta": {"version": "1.0.0"}, "payload": {"success": True}}
_ROLE = {
    "role": {"name": "engineer"},
    "user": {"id": "0b6f4c2e-0013-4a8e-9c1d-5e7f3a2b0013"},
}

EXAMPLES.update(
    {
        "POST /v2/auth/token": {
            "request": _TOKEN_FORM,
            "status": 200,
            "response": {
                "access_token": "wpt_3q2+7w==.example",
                "token_type": "Bearer",
                "expires_in": 300,
            },
        },
        "POST /oauth/token": {
            "request": _TOKEN_FORM,
            "status": 200,
            "response": {
                "access_token": "wps_Zm9vYmFy.example",
                "token_type": "Bearer",
                "expires_in": 300,
            },
        },
        "PUT /platform/v1/organizations/{organizationId}/role-assignment": {
            "request": {
                "role": {"name": "admin"},
                "user": {"id": "0b6f4c2e-0013-4a8e-9c1d-5e7f3a2b0013"},
            },
            "status": 200,
            "response": _SUCCESS,
        },
        "POST /platform/v1/environments/{environmentId}/role-assignment": {
            "request": _ROLE,
            "status": 200,
            "response": _SUCCESS,
        },
        "PUT /platform/v1/environments/{environmentId}/role-assignment": {
            "request": {**_ROLE, "role": {"name": "support"}},
            "status": 200,
            "response": _SUCCESS,
        },
        "DELETE /platform/v1/environments/{environmentId}/role-assignment": {
            "request": {"user": _ROLE["user"]},
            "status": 200,
            "response": _SUCCESS,
        },
        "GET /health": {"request": None, "status": 200, "response": {"status": "ok"}},
        "GET /ready": {"request": None, "status": 200, "response": {"status": "ready"}},
    }
)
