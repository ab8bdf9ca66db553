"""The lead's item browser: filtered, keyset-paginated lists and one item's page with its full review history."""
from django.shortcuts import get_object_or_404, render
from django.utils.http import urlencode

from annotation.items import selectors as browse
from annotation.items.forms import BrowseFilterForm
from annotation.models import Item, Label
from annotation.permissions import LEAD, project_view
from annotation.queue.views import item_panels


@project_view(LEAD)
def item_list(request, access):
    label_names = list(Label.objects.filter(project=access.project).values_list("name", flat=True))
    form = BrowseFilterForm(request.GET, label_names=label_names)
    filters = form.cleaned_data if form.is_valid() else {}
    page = browse.items_browse(project=access.project, **{k: v for k, v in filters.items() if v not in ("", None)})
    context = {"access": access, "project": access.project, "form": form, "page": page,
               "query": urlencode({k: v for k, v in filters.items() if k not in ("after", "before") and v})}
    template = "annotation/items/_browse_results.html" if request.htmx else "annotation/items/browse.html"
    return render(request, template, context)


@project_view(LEAD)
def item_detail(request, access, item_id):
    item = get_object_or_404(Item.objects.select_related("claimed_by"), pk=item_id, project=access.project)
    context = {"access": access, "project": access.project, "item": item,
               "history": browse.item_history(item=item), **item_panels(item)}
    return render(request, "annotation/items/item_detail.html", context)
