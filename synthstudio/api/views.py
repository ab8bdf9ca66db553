"""The account page of personal API tokens: list, create (the token is shown once), revoke. Thin: form -> service."""
from datetime import datetime, time

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotation.errors import ServiceError
from annotation.permissions import user_view
from synthstudio.api import tokens
from synthstudio.api.forms import TokenCreateForm, TokenRevokeForm


@user_view
def token_list(request):
    form = TokenCreateForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        expires_on = form.cleaned_data["expires_on"]
        expires_at = None if expires_on is None else datetime.combine(expires_on, time.max,
                                                                       tzinfo=timezone.get_current_timezone())
        try:
            created = tokens.token_create(user=request.user, name=form.cleaned_data["name"], expires_at=expires_at)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            form = TokenCreateForm()
    response = render(request, "api/tokens.html", {"form": form, "created": created,
                                                   "tokens": tokens.tokens_for_user(user=request.user)[:100]},
                      status=400 if form.errors else 200)
    # The page shows a secret once: no cache may keep it.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@user_view
def token_revoke(request):
    form = TokenRevokeForm(request.POST)
    try:
        if not form.is_valid():
            raise ServiceError("Choose a token to revoke.")
        token = tokens.token_revoke(user=request.user, token_id=form.cleaned_data["token_id"])
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Token '{token.name}' revoked; scripts using it now get 401.")
    return redirect("api_tokens")
