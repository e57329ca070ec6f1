"""A Graph lead as the one typed value every form intake produces: `FormSubmission`."""

from __future__ import annotations

from core.form_fields import FormFieldMap
from core.forms import FormAttribution, FormSource, FormSubmission
from integrations.meta_leads.schema import GraphLead, LeadgenEvent


def graph_lead_submission(
    lead: GraphLead, event: LeadgenEvent | None, fields: FormFieldMap
) -> FormSubmission:
    """The lead's answers sorted by `fields` (prompts/lead_forms.toml) and what brought it.

    The Graph node wins over the webhook where both say something; the webhook fills what
    the node lacks (page_id is only in the webhook; ad fields are absent from the node
    when the token has no ads_management). The webhook's `adgroup_id` is Meta's legacy
    name for the ad, so it stands in for `ad_id`; `attribution.adgroup_id` is the ad set
    (`adset_id`), the grouping a seller and the CRM know.
    """
    form_id = lead.form_id or (event.form_id if event else None)
    mapped = fields.map(form_id, lead.answers())
    attribution = FormAttribution(
        leadgen_id=lead.id,
        form_id=form_id,
        form_name=mapped.form_name,
        ad_id=lead.ad_id or ((event.ad_id or event.adgroup_id) if event else None),
        ad_name=lead.ad_name,
        adgroup_id=lead.adset_id,
        campaign_id=lead.campaign_id,
        campaign_name=lead.campaign_name,
        page_id=event.page_id if event else None,
        platform=lead.platform,
        is_organic=lead.is_organic,
    )
    return FormSubmission(
        source=FormSource.META_LEAD_ADS,
        external_id=lead.id,
        submitted_at=lead.created_time,
        phone=mapped.phone,
        profile=mapped.profile,
        answers=mapped.answers,
        attribution=attribution,
    )


__all__ = ["graph_lead_submission"]
