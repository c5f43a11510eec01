"""The survey's part in a message (campaigns.composing.contributions): the form's survey choice, sample links and
the check that both parts show the question, and per recipient `survey_url(answer)`, `survey_block()` and
`survey.question` with links sealed to their send.

Registered when this module is imported (campaigns.capabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.composing.contributions import Contributor, Parts, Recipient, SampleContribution, register
from campaigns.models import Campaign, Survey
from campaigns.surveys.links import SurveyLinks
from campaigns.surveys.service import chosen_survey
from mailer.tracking import Purpose, TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime


class Surveys(Contributor):
    """The first question of the campaign's survey, answerable from the mail with one click."""

    name = "surveys"
    order = 20
    attributes = ("survey_id",)

    def choose(self, session: Session, data: Mapping[str, Any], campaign: Campaign | None,
               content: str) -> dict[str, Any]:
        return {"survey_id": chosen_survey(session, data, campaign, content)}

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution | None:
        survey_id = choices.get("survey_id")
        survey = session.get(Survey, survey_id) if session is not None and survey_id else None
        links = SurveyLinks.for_campaign(session, Campaign(survey_id=survey_id), base_url=base_url,
                                         tokens=tokens) if survey is not None else None
        if links is None:
            return None
        name, prefix = survey.name, recipient_urls.prefix(base_url, Purpose.SURVEY)

        def check(parts: Parts) -> list[str]:
            return [f"this campaign carries the survey “{name}”, but its {label} part has no survey question: add "
                    "{{ survey_block() }} to " + where + " (or choose no survey)"
                    for label, body, where in parts if prefix not in body]

        return SampleContribution(links.context(0), check)

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> SurveyLinks | None:
        return SurveyLinks.for_campaign(session, campaign, base_url=rt.settings.base_url, tokens=rt.tokens)

    def variables(self, state: SurveyLinks, recipient: Recipient) -> dict[str, Any]:
        return state.context(recipient.send_id)

    def recall(self, rt: Runtime, session: Session, campaign: Campaign, send_id: int,
               contact_id: int) -> dict[str, Any]:
        links = self.prepare(rt, session, campaign) if campaign.survey_id else None
        return links.context(send_id) if links is not None else {}


register(Surveys())
