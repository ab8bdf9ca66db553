"""System checks of the generation settings: ``manage.py check`` (and every start) names a bad value."""
from django.conf import settings
from django.core.checks import Error, register

from generation.providers import PROVIDERS


@register()
def llm_provider_check(app_configs, **kwargs) -> list[Error]:
    """LLM_PROVIDER is the provider the start form proposes; a name no provider is registered under is a typo."""
    if settings.LLM_PROVIDER in PROVIDERS:
        return []
    return [Error(f"LLM_PROVIDER={settings.LLM_PROVIDER!r} is not a provider; use one of {', '.join(PROVIDERS)}.",
                  id="generation.E001")]
