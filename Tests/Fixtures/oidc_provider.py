#!/usr/bin/env python3
"""A real OpenID Connect provider for the sign-in tests: django-oauth-toolkit with OIDC on,
its own users, and one confidential client registered for the worker's callback.

    oidc_provider.py --client-id ID --client-secret SECRET --redirect-uri URL [--redirect-uri URL ...]
                     --user EMAIL:PASSWORD [--user ...] [--unverified EMAIL ...] [--port N]

Prints "listening on http://127.0.0.1:PORT" once ready; its issuer is http://127.0.0.1:PORT/o
(discovery at /o/.well-known/openid-configuration). People log in at /accounts/login/ with the
email address as the user name; the client skips the provider's own consent screen (the
worker asks for consent itself). id_tokens carry `email` and `email_verified` (false for the
addresses given with --unverified).
"""
import argparse
import os
import signal
import sys
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LOGIN_PAGE = """<!doctype html><html><head><title>Test provider: log in</title></head><body>
<h1>Test identity provider</h1>
<form method="post">{% csrf_token %}
<label>Email <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button></form></body></html>"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", action="append", required=True)
    parser.add_argument("--user", action="append", default=[])
    parser.add_argument("--unverified", action="append", default=[])
    args = parser.parse_args()
    # Started from a thread that blocks signals, we would inherit the mask and ignore SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])

    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *arguments):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", args.port), QuietHandler)
    port = server.server_address[1]
    issuer = "http://127.0.0.1:%d/o" % port
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    directory = tempfile.mkdtemp(prefix="oidc-provider-")
    unverified = set(address.lower() for address in args.unverified)

    from django.conf import settings
    settings.configure(
        DEBUG=False, SECRET_KEY="test-provider-" + os.urandom(16).hex(), ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "oauth2_provider"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware", "django.middleware.common.CommonMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware", "django.contrib.auth.middleware.AuthenticationMiddleware"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(directory, "provider.sqlite3")}},
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False, "OPTIONS": {
            "loaders": [("django.template.loaders.locmem.Loader", {"registration/login.html": LOGIN_PAGE}),
                        "django.template.loaders.app_directories.Loader"],
            "context_processors": ["django.template.context_processors.request", "django.contrib.auth.context_processors.auth"]}}],
        LOGIN_URL="/accounts/login/", USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        # A test's people: a hasher that answers at once (the default takes a second a login).
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        OAUTH2_PROVIDER={
            "OIDC_ENABLED": True, "OIDC_RSA_PRIVATE_KEY": key, "OIDC_ISS_ENDPOINT": issuer, "PKCE_REQUIRED": True,
            "SCOPES": {"openid": "OpenID Connect", "email": "Your email address"},
            "OAUTH2_VALIDATOR_CLASS": "__main__.EmailValidator",
        },
    )
    import django
    django.setup()

    from django.contrib.auth.views import LoginView
    from django.urls import include, path
    from oauth2_provider.oauth2_validators import OAuth2Validator

    class EmailValidator(OAuth2Validator):
        oidc_claim_scope = None  # every claim goes into the id_token, whatever the scopes

        def get_additional_claims(self, request):
            email = request.user.email
            return {"email": email, "email_verified": email.lower() not in unverified}

    sys.modules["__main__"].EmailValidator = EmailValidator
    sys.modules[__name__].urlpatterns = [
        path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
        path("accounts/login/", LoginView.as_view(template_name="registration/login.html")),
    ]

    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth.models import User
    from oauth2_provider.models import get_application_model
    for item in args.user:
        email, password = item.split(":", 1)
        User.objects.create_user(username=email, email=email, password=password)
    get_application_model().objects.create(
        name="greptile-mcp", client_id=args.client_id, client_secret=args.client_secret,
        client_type="confidential", authorization_grant_type="authorization-code",
        redirect_uris=" ".join(args.redirect_uri), algorithm="RS256", skip_authorization=True)

    from django.core.wsgi import get_wsgi_application
    server.set_app(get_wsgi_application())
    print("listening on http://127.0.0.1:%d" % port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


urlpatterns = []

if __name__ == "__main__":
    main()
