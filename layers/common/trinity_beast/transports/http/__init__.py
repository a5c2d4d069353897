"""HTTP: the LPO and LRS apps, admin and partner routes, OpenAPI, guards below the app."""
