"""Every HTMX page and its websockets: function views that read through selectors and write through
services of the apps below (never the other way: no app imports pages). Routes are in urls.py;
templates in templates/; live regions pushed over Channels reuse the same partials (consumers.py)."""
