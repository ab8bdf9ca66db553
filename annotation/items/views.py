"""The lead's item browser: filtered, keyset-paginated lists and one item's page with its full review history."""
from django.utils.http import urlencode

from annotation.items import selectors
from annotation.items.forms import BrowseFilterForm
from annotation.permissions import LEAD, project_view
from synthstudio.lib.pages import render_page


@project_view(LEAD)
def item_list(request, access):
    form = BrowseFilterForm(request.GET, label_names=selectors.browse_label_names(project=access.project))
    filters = form.cleaned_data if form.is_valid() else {}
    page = selectors.items_browse(project=access.project, **{k: v for k, v in filters.items() if v not in ("", None)})
    query = urlencode({k: v for k, v in filters.items() if k not in ("after", "before") and v})
    return render_page(request, access, "annotation/items/browse.html",
                       partial="annotation/items/_browse_results.html", form=form, page=page, query=query)


@project_view(LEAD)
def item_detail(request, access, item_id):
    item = selectors.item_get(project=access.project, item_id=item_id)
    return render_page(request, access, "annotation/items/item_detail.html", item=item,
                       history=selectors.item_history(item=item), **selectors.item_panels(item=item))
