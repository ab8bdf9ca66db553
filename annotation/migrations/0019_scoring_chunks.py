"""Chunked scoring rounds: a round's stage and chunk count, its chunks, and its stored model."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0018_item_counts_detail'),
    ]

    operations = [
        migrations.CreateModel(
            name='ScoringModel',
            fields=[
                ('scoring_round', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='stored_model', serialize=False, to='annotation.scoringround')),
                ('model', models.BinaryField()),
                ('train_scores', models.BinaryField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name='scoringround',
            name='chunks',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='scoringround',
            name='stage',
            field=models.CharField(blank=True, choices=[('', '-'), ('train', 'Training'), ('score', 'Scoring chunks'), ('route', 'Routing')], default='', max_length=8),
        ),
        migrations.CreateModel(
            name='ScoringChunk',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveIntegerField()),
                ('first_id', models.BigIntegerField()),
                ('last_id', models.BigIntegerField()),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('done', 'Done')], default='pending', max_length=8)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('items_scored', models.PositiveIntegerField(default=0)),
                ('items_written', models.PositiveIntegerField(default=0)),
                ('scores', models.BinaryField(null=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('scoring_round', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='chunk_rows', to='annotation.scoringround')),
            ],
            options={
                'ordering': ['scoring_round', 'index'],
                'constraints': [models.UniqueConstraint(fields=('scoring_round', 'index'), name='scoring_chunk_unique_index')],
            },
        ),
    ]
