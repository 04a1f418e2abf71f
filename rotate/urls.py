"""URLs of the platform's endpoints (E8 credits); include under e.g. `api/v1/`. Trailing
slash optional."""

from django.urls import re_path

from rotate import credit_views

app_name = "rotate"

# Matches like `/?`, but reverse() and the OpenAPI paths give the canonical path, without
# the slash (as generations.urls).
_SLASH = "(?:/)?"

urlpatterns = [
    re_path(rf"^credits{_SLASH}$", credit_views.CreditBalanceView.as_view(), name="credits"),
    re_path(
        rf"^credits/entries{_SLASH}$",
        credit_views.CreditEntryListView.as_view(),
        name="credit-entries",
    ),
]
