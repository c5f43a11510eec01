"""Short surveys (1-5 questions) and their answers."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow


class QuestionKind(StrEnum):
    RATING = "rating"        # 1-5
    YES_NO = "yes_no"
    CHOICE = "choice"        # one of the question's choices
    TEXT = "text"            # short free text


class Survey(Base):
    """A short survey a campaign carries; its first question can be answered from the mail itself."""

    __tablename__ = "survey"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    intro: Mapped[str] = mapped_column(Text, default="")        # shown on the public page
    thanks: Mapped[str] = mapped_column(Text, default="")       # shown after answering
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    questions: Mapped[list[SurveyQuestion]] = relationship(
        back_populates="survey", cascade="all, delete-orphan", order_by="SurveyQuestion.position")


class SurveyQuestion(Base):
    __tablename__ = "survey_question"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)              # 0-based; 0 is answered in the mail
    kind: Mapped[QuestionKind] = mapped_column(String(20))
    prompt: Mapped[str] = mapped_column(String(500))
    choices: Mapped[list[Any]] = mapped_column(JSON, default=list)   # for kind choice

    survey: Mapped[Survey] = relationship(back_populates="questions")

    __table_args__ = (UniqueConstraint("survey_id", "position"),)


class SurveyAnswer(Base):
    """A recipient's current answer to one question (answering again replaces it; events keep the history)."""

    __tablename__ = "survey_answer"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"))
    question_id: Mapped[int] = mapped_column(ForeignKey("survey_question.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    send_id: Mapped[int] = mapped_column(BigId)
    value: Mapped[str] = mapped_column(String(500))             # "4", "yes", a choice, or the free text
    answered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("send_id", "question_id"),
        Index("ix_survey_answer_question_value", "survey_id", "position", "value", "contact_id"),
        Index("ix_survey_answer_contact", "contact_id"),
    )
