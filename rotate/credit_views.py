"""E8: the caller's credit balance and its ledger, page by page (contract §11). Read-only."""

from rest_framework.request import Request
from rest_framework.response import Response

from rotate.pagination import page_from_query
from rotate.selectors import credit_balance, credit_entries
from rotate.serializers import credit_entry_data
from rotate.views import ApiView, request_owner


class CreditBalanceView(ApiView):
    """E8 `GET credits`."""

    def get(self, request: Request) -> Response:
        owner = request_owner(request)
        return Response({"userId": str(owner.pk), "credits": credit_balance(owner=owner)})


class CreditEntryListView(ApiView):
    """E8 `GET credits/entries?page=1&pageSize=20`, newest first."""

    def get(self, request: Request) -> Response:
        page = page_from_query(credit_entries(owner=request_owner(request)), request.query_params)
        return Response(
            {
                "page": page.number,
                "pageSize": page.size,
                "total": page.total,
                "entries": [credit_entry_data(entry) for entry in page.rows],
            }
        )
