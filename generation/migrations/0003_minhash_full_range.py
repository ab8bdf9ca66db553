"""Recompute the stored near-duplicate band keys: the MinHash multipliers now range over the whole field (issue 16.9),
so every key written before means nothing to the new filter.

It runs outside one big transaction, a batch of items per transaction, so a table of millions of keys neither holds
one long transaction nor loads into memory; a run that stops part-way is simply run again (each batch replaces all of
its items' keys). Keys of items that no longer exist are dropped. It uses the filter's current ``band_keys``, on
purpose: the keys must be the ones the running code looks up.
"""
from django.db import migrations, transaction

from generation.filters import band_keys, shingles


def band_keys_recompute(apps, schema_editor, batch_size=1000):
    NearDuplicateKey = apps.get_model("generation", "NearDuplicateKey")
    Item = apps.get_model("annotation", "Item")
    last = 0
    while True:
        # The unique (item_id, band) index serves this walk in item order.
        ids = list(NearDuplicateKey.objects.filter(item_id__gt=last).order_by("item_id")
                   .values_list("item_id", flat=True).distinct()[:batch_size])
        if not ids:
            return
        with transaction.atomic():
            NearDuplicateKey.objects.filter(item_id__in=ids).delete()
            NearDuplicateKey.objects.bulk_create([
                NearDuplicateKey(project_id=project_id, item_id=pk, band=band)
                for pk, project_id, text in Item.objects.filter(pk__in=ids).values_list("id", "project_id", "text")
                for band in band_keys(shingles(text))
            ])
        last = ids[-1]


def band_keys_drop(apps, schema_editor):
    """Going back: the older code cannot use these keys, and it indexes items without keys when a job starts."""
    NearDuplicateKey = apps.get_model("generation", "NearDuplicateKey")
    while ids := list(NearDuplicateKey.objects.values_list("id", flat=True)[:10000]):
        NearDuplicateKey.objects.filter(id__in=ids).delete()


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("generation", "0002_generation"),
    ]

    operations = [
        migrations.RunPython(band_keys_recompute, band_keys_drop),
    ]
