"""The Acme JSON of the synthetic company: the account, users, stages, accounts, deals
and deletions."""

from typing import Any

from acmecrm.wire import stamp

from connectors.sandbox.dataset import Account, Company, Deal, Deletion, Rep, StageDef


def me_json(company: Company) -> dict[str, Any]:
    return {"company": {"name": company.name, "currency": company.home_currency}}


def user_json(rep: Rep) -> dict[str, Any]:
    return {"id": rep.id, "name": rep.full_name, "email": rep.email, "active": rep.active,
            "role": rep.role, "team": rep.team, "updated_at": stamp(rep.modified_at)}


def stage_json(stage: StageDef) -> dict[str, Any]:
    return {"id": stage.id, "pipeline": stage.pipeline, "name": stage.name,
            "position": stage.order, "probability": stage.probability,
            "outcome": stage.category}


def _owner(company: Company, rep_id: str) -> dict[str, Any]:
    rep = company.rep_by_id[rep_id]
    return {"id": rep.id, "name": rep.full_name, "email": rep.email}


def account_json(company: Company, account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "industry": account.industry,
            "owner": _owner(company, account.owner_id),
            "created_at": stamp(account.created_at), "updated_at": stamp(account.modified_at)}


def deal_json(company: Company, deal: Deal) -> dict[str, Any]:
    account = company.accounts.get(deal.account_id or "")
    return {"id": deal.id, "title": deal.name,
            "value": {"amount": str(deal.amount), "currency": deal.currency,
                      "rate": str(deal.exchange_rate)},
            "stage_id": deal.stage_id, "probability": deal.probability,
            "close_date": deal.close_date.isoformat(), "owner": _owner(company, deal.owner_id),
            "account_id": deal.account_id, "account_name": account.name if account else None,
            "created_at": stamp(deal.created_at), "updated_at": stamp(deal.modified_at)}


def deletion_json(deletion: Deletion) -> dict[str, Any]:
    return {"type": "deal" if deletion.entity == "deals" else "account", "id": deletion.id,
            "deleted_at": stamp(deletion.deleted_at)}
