"""Forms of the queue and case pages. Every action asks why: the reason lands on the case's history."""

from __future__ import annotations

from django import forms

REASON_HELP = "Why? It is recorded on the case's history for whoever reads it next."


def reason_field(required: bool = True) -> forms.CharField:
    return forms.CharField(
        max_length=500,
        required=required,
        strip=True,
        help_text=REASON_HELP,
        error_messages={"required": "Give a reason: it is recorded on the case's history."},
        widget=forms.TextInput(attrs={"placeholder": "Reason (required)", "autocomplete": "off"}),
    )


class ReasonForm(forms.Form):
    """A transition that needs only a reason (start, wait, resume, cancel)."""

    reason = reason_field()


class AssignForm(forms.Form):
    assignee = forms.TypedChoiceField(coerce=int, error_messages={"invalid_choice": "Pick someone from the list."})
    reason = reason_field()

    def __init__(self, *args, members=(), **kwargs):
        kwargs.setdefault("auto_id", "assign-%s")
        super().__init__(*args, **kwargs)
        self.members = {member.pk: member for member in members}
        self.fields["assignee"].choices = [("", "— choose —")] + [
            (member.pk, member.get_full_name() or member.username) for member in members
        ]

    def clean_assignee(self):
        return self.members[self.cleaned_data["assignee"]]


class RouteForm(forms.Form):
    queue = forms.ChoiceField(error_messages={"invalid_choice": "Pick a queue from the list."})
    reason = reason_field()

    def __init__(self, *args, queues=(), **kwargs):
        kwargs.setdefault("auto_id", "route-%s")
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [("", "— choose —")] + [(queue.code, queue.name) for queue in queues]


class CommentForm(forms.Form):
    body = forms.CharField(
        max_length=4000,
        strip=True,
        error_messages={"required": "Write something before posting the comment."},
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Add a note for colleagues"}),
    )


# Extra values some resolutions read from ``params`` (see exceptions.resolutions): (name, label, kind, help).
LINE_NO = ("line_no", "Order line number", "text", "Only when the case is about a whole order")
RESOLUTION_PARAMS: dict[str, list[tuple[str, str, str, str]]] = {
    "reallocate": [
        ("warehouse", "From warehouse (code)", "text", "Empty: other locations of the order's warehouse"),
        LINE_NO,
    ],
    "backorder": [LINE_NO],
    "cancel_line": [LINE_NO],
    "substitute": [("sku", "Substitute SKU", "text", "Empty: the item's first listed substitute"), LINE_NO],
    "reassign_carrier": [
        ("carrier", "Carrier", "text", "The carrier to book instead: one that collects at the warehouse"),
        ("service_level", "Service level", "text", "Empty: keep the current one"),
    ],
    "fix_address": [
        ("ship_to_name", "Name", "text", "Empty: keep"),
        ("ship_to_lines", "Street lines", "textarea", "One line per row; empty: keep"),
        ("ship_to_city", "City", "text", "Empty: keep"),
        ("ship_to_postal_code", "Postal code", "text", "Empty: keep"),
        ("ship_to_country", "Country (2 letters)", "text", "Empty: keep"),
    ],
    "replay": [("payload", "Corrected payload (JSON, optional)", "textarea", "Empty: replay the message unchanged")],
}


class ResolveForm(forms.Form):
    resolution = forms.ChoiceField(error_messages={"invalid_choice": "Pick one of the resolutions offered."})
    reason = reason_field()

    def __init__(self, *args, resolutions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["resolution"].choices = [(code, label) for code, label in resolutions]
        for code, params in RESOLUTION_PARAMS.items():
            for name, label, kind, help_text in params:
                widget = forms.Textarea(attrs={"rows": 3}) if kind == "textarea" else forms.TextInput()
                widget.attrs["data-resolution"] = code
                self.fields[f"param_{code}_{name}"] = forms.CharField(
                    label=label, required=False, max_length=4000, help_text=help_text, widget=widget
                )

    def params(self) -> dict:
        """The values filled in for the chosen resolution, without the form's prefixing."""
        code = self.cleaned_data["resolution"]
        prefix = f"param_{code}_"
        return {
            name.removeprefix(prefix): value
            for name, value in self.cleaned_data.items()
            if name.startswith(prefix) and value not in ("", None)
        }


class BulkForm(forms.Form):
    """The same action on every selected case: assign to one person, or resolve the same way."""

    ACTIONS = [("assign", "Assign to"), ("resolve", "Resolve as")]

    action = forms.ChoiceField(choices=ACTIONS, error_messages={"invalid_choice": "Choose assign or resolve."})
    case_ids = forms.CharField(error_messages={"required": "Tick the cases to act on first."})
    assignee = forms.TypedChoiceField(coerce=int, required=False)
    resolution = forms.ChoiceField(required=False)
    reason = reason_field()

    MAX_CASES = 200

    def __init__(self, *args, members=(), resolutions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.members = {member.pk: member for member in members}
        self.fields["assignee"].choices = [("", "— person —")] + [
            (member.pk, member.get_full_name() or member.username) for member in members
        ]
        self.fields["resolution"].choices = [("", "— resolution —"), *resolutions]

    def clean_case_ids(self):
        raw = self.cleaned_data["case_ids"]
        try:
            ids = sorted({int(part) for part in raw.replace(" ", ",").split(",") if part.strip()})
        except ValueError:
            raise forms.ValidationError("Case numbers must be whole numbers.") from None
        if not ids:
            raise forms.ValidationError("Tick the cases to act on first.")
        if len(ids) > self.MAX_CASES:
            raise forms.ValidationError(f"Act on at most {self.MAX_CASES} cases at once; narrow the filter.")
        return ids

    def clean(self):
        cleaned = super().clean()
        action = cleaned.get("action")
        if action == "assign":
            if not cleaned.get("assignee"):
                self.add_error("assignee", "Pick the person to assign the cases to.")
            else:
                cleaned["assignee"] = self.members[cleaned["assignee"]]
        elif action == "resolve" and not cleaned.get("resolution"):
            self.add_error("resolution", "Pick the resolution to apply to every selected case.")
        return cleaned
