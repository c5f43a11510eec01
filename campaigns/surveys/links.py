"""A survey in the mail: the first question with one sealed link per answer (Purpose.SURVEY: send id, question 0,
answer code), built once per batch of a campaign's messages (see campaigns.surveys.contribution)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import escape
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.models import Campaign, QuestionKind, Survey
from campaigns.surveys.service import options
from mailer.tracking import Purpose, TokenCodec


class SurveyBlock:
    """The first question with one link per answer: HTML in the HTML part, plain lines in the text part."""

    __slots__ = ("html", "text")

    def __init__(self, html: str, text: str) -> None:
        self.html = html
        self.text = text

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SurveyLinks:
    """What a campaign's messages need to carry its survey, built once per batch (see CampaignMailer)."""

    survey_id: int
    prompt: str
    kind: str
    options: tuple[str, ...]
    base_url: str
    tokens: TokenCodec

    @classmethod
    def for_campaign(cls, session: Session, campaign: Campaign, *, base_url: str,
                     tokens: TokenCodec) -> SurveyLinks | None:
        """None when the campaign carries no survey (or it has no questions)."""
        if not campaign.survey_id:
            return None
        survey = session.get(Survey, campaign.survey_id)
        if survey is None or not survey.questions:
            return None
        first = survey.questions[0]
        return cls(survey.id, first.prompt, str(first.kind), options(first), base_url, tokens)

    def url(self, send_id: int, answer: Any = None) -> str:
        """The link answering the first question with answer (or opening the page when answer is None)."""
        code = 0
        if answer is not None:
            text = "yes" if answer is True else "no" if answer is False else str(answer).strip().lower()
            lowered = [o.lower() for o in self.options]
            if text not in lowered:
                raise ValueError(f"survey_url({answer!r}): the first question accepts {', '.join(self.options)}"
                                 if self.options else "survey_url(): the first question takes free text; "
                                 "call survey_url() without an answer")
            code = lowered.index(text) + 1
        return recipient_urls.sealed(self.base_url, self.tokens, Purpose.SURVEY, send_id, 0, code)

    def block(self, send_id: int) -> SurveyBlock:
        """The first question and its one-click answers."""
        prompt = escape(self.prompt)
        if not self.options:
            link = self.url(send_id)
            return SurveyBlock(
                f'<p style="margin:0 0 8px;font-weight:600">{prompt}</p>'
                f'<p style="margin:0"><a href="{link}" style="color:#1d4ed8">Answer in one minute</a></p>',
                f"{self.prompt}\nAnswer here: {link}\n")
        labels = {"yes": "Yes", "no": "No"}
        cells = []
        lines = []
        for option in self.options:
            link = self.url(send_id, option)
            label = labels.get(option, option)
            cells.append(f'<a href="{link}" style="display:inline-block;margin:0 6px 6px 0;padding:8px 14px;'
                         f'border:1px solid #1d4ed8;border-radius:6px;color:#1d4ed8;text-decoration:none;'
                         f'font-weight:600">{escape(label)}</a>')
            lines.append(f"{label}: {link}")
        hint = ' <span style="color:#6b7280;font-weight:400">(1 = poor, 5 = great)</span>' \
            if self.kind == QuestionKind.RATING else ""
        return SurveyBlock(f'<p style="margin:0 0 8px;font-weight:600">{prompt}{hint}</p><p style="margin:0">'
                           + "".join(cells) + "</p>",
                           self.prompt + "\n" + "\n".join(lines) + "\n")

    def context(self, send_id: int) -> dict[str, Any]:
        """Template values: survey_url(answer=None), survey_block() and survey.question."""
        return {"survey_url": lambda answer=None: self.url(send_id, answer),
                "survey_block": lambda: self.block(send_id),
                "survey": {"question": self.prompt, "options": list(self.options)}}
