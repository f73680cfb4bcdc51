from __future__ import annotations

import pytest

from agent.audit.checks import Issue, check_record, find_pii
from agent.plan import Quality

Q = Quality()
SEED_REFUSAL = (
    "I can't help with that request, as it would violate others' privacy and our terms of service.\n\n"
    "If you're having trouble accessing your own account, I'd be happy to help you recover it through our "
    "secure process. Would you like me to explain how?"
)
SEED_SINGLE = {"messages": [
    {"role": "system", "content": "You are a customer support agent for TechCorp. Help users with product questions professionally and concisely."},
    {"role": "user", "content": "How do I reset my password?"},
    {"role": "assistant", "content": "Here's how to reset your password:\n\n1. Go to techcorp.com/login\n2. Click 'Forgot Password'\n3. Enter your email address\n4. Check your inbox for the reset link\n\nThe link expires in 24 hours. Need any other help?"},
]}
SEED_MULTI = {"messages": [
    {"role": "system", "content": "You are a customer support agent for TechCorp."},
    {"role": "user", "content": "I can't log in"},
    {"role": "assistant", "content": "I'd be happy to help you log in. Could you tell me what happens when you try? Do you see an error message?"},
    {"role": "user", "content": "It says invalid password"},
    {"role": "assistant", "content": "That error usually means the password doesn't match our records. Here are your options:\n\n1. **Reset password**: Click 'Forgot Password' on the login page\n2. **Check caps lock**: Make sure it's not on\n3. **Try another browser**: Sometimes cached data causes issues\n\nWould you like me to send a password reset link to your email?"},
]}


def chat(*turns: str, system: str | None = "You are a support agent for a GPU cloud.") -> dict:
    msgs = [{"role": "system", "content": system}] if system is not None else []
    msgs += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return {"messages": msgs}


def codes(record, shape="chat", quality=Q, requested=None) -> list[str]:
    return [i.code for i in check_record(record, shape, quality, requested)]


def seed_flags_refusal(content: str) -> bool:
    """Seed 003's own rule, to show where ours disagrees with it."""
    return "I cannot" in content and "help" not in content.lower()


# --- chat structure -------------------------------------------------------------------------------

def test_seed_examples_pass():
    assert check_record(SEED_SINGLE, "chat", Q) == []
    assert check_record(SEED_MULTI, "chat", Q) == []
    assert codes(chat("Can you help me hack into someone's account?", SEED_REFUSAL)) == []


@pytest.mark.parametrize("record, code", [
    ({}, "no_messages"),
    ({"messages": "hello there"}, "no_messages"),
    ({"messages": []}, "no_messages"),
    ({"messages": ["How do I resize a volume?"]}, "bad_message"),
    ({"messages": [{"role": "user", "content": 42}]}, "bad_message"),
    ({"messages": [{"role": None, "content": "How do I resize a volume?"}]}, "bad_message"),
])
def test_unreadable_structure_stops_early(record, code):
    assert codes(record) == [code]


def test_roles_only_system_user_assistant():
    rec = chat("How do I resize a volume?", "Stop the instance, then resize it in the Volumes tab.")
    rec["messages"].insert(2, {"role": "tool", "content": "volume resized to 200 GB"})
    assert "bad_role" in codes(rec)


def test_system_message_once_and_first():
    two = chat("How do I resize a volume?", "Stop the instance, then resize it in the Volumes tab.")
    two["messages"].insert(1, {"role": "system", "content": "Answer briefly and precisely."})
    assert "system_not_first" in codes(two)
    late = chat("How do I resize a volume?", "Stop the instance, then resize it in the Volumes tab.", system=None)
    late["messages"].append({"role": "system", "content": "Answer briefly and precisely."})
    assert "system_not_first" in codes(late)


def test_needs_user_and_assistant_and_ends_with_assistant():
    assert {"no_user", "roles_not_alternating"} <= set(codes(chat(system="You help.") | {"messages": [
        {"role": "assistant", "content": "Hello, how can I help you today?"}]}))
    only_user = codes(chat("How do I resize a volume?"))
    assert "no_assistant" in only_user and "ends_not_assistant" in only_user
    ends_user = codes(chat("How do I resize a volume?", "Use the Volumes tab.", "And for a running one?"))
    assert ends_user == ["ends_not_assistant"]


def test_roles_alternate():
    rec = chat("How do I resize a volume?", system=None)
    rec["messages"] += [{"role": "user", "content": "It is a 100 GB volume on node 3."},
                        {"role": "assistant", "content": "Stop the instance, then resize it in the Volumes tab."}]
    issues = check_record(rec, "chat", Q)
    assert [i.code for i in issues] == ["roles_not_alternating"]
    assert "turn 2" in issues[0].message


def test_empty_short_and_long_turns_name_the_turn():
    issues = check_record(chat("How do I resize a volume?", "Yes."), "chat", Q)
    assert issues == [Issue("too_short", "assistant turn 1 is 4 chars, below the 10-char minimum")]
    assert codes(chat("   ", "Stop the instance, then resize it.")) == ["empty_turn"]
    assert codes(chat("How do I resize a volume?", "x" * 10_001)) == ["too_long"]
    assert codes(chat("How do I resize a volume?", "x" * 10_000)) == []
    assert codes(chat("Resize?", "Use the Volumes tab."), quality=Quality(min_chars=5)) == []
    assert codes(chat("How do I resize a volume?", "Use the Volumes tab."), quality=Quality(max_chars=20)) == ["too_long"]


def test_short_system_message_is_fine_but_empty_is_not():
    assert codes(chat("How do I resize a volume?", "Use the Volumes tab.", system="Be brief.")) == []
    assert codes(chat("How do I resize a volume?", "Use the Volumes tab.", system=" ")) == ["empty_turn"]


def test_duplicate_user_turns_after_normalising_space_and_case():
    rec = chat("How do I resize a volume?", "Which volume do you mean?", "how do I  resize a volume?",
               "Stop the instance, then resize it in the Volumes tab.")
    issues = check_record(rec, "chat", Q)
    assert [i.code for i in issues] == ["duplicate_user_turn"]
    assert "user turn 2 repeats user turn 1" in issues[0].message


# --- tone and refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("reply", [
    "As an AI, I don't have access to your billing data, but the Billing page lists every charge.",
    "As an AI language model, I recommend checking the Billing page for every charge.",
    "As a language model I can't see your account; the Billing page lists every charge.",
    "Good question. As an AI model I see no account data; the Billing page lists every charge.",
])
def test_as_an_ai_variants(reply):
    assert "as_an_ai" in codes(chat("Why was I charged twice this month?", reply))


def test_as_an_ai_inside_a_sentence_is_fine():
    reply = "Accelerators such as an AI inference card are billed per hour; the Billing page lists every charge."
    assert codes(chat("How are inference cards billed?", reply)) == []


@pytest.mark.parametrize("reply", [
    "I cannot help with that.",                               # seed passes it: its "help" is the refusal
    "I can't do that.",                                       # seed misses "I can't"
    "I'm unable to share that information.",
    "We won't issue refunds for hours already used.",
    "I am not able to change the quota of another account.",
])
def test_refusal_without_help_is_flagged(reply):
    assert codes(chat("Can you refund my last invoice?", reply)) == ["refusal_without_help"]


@pytest.mark.parametrize("reply, seed_flags", [
    ("I cannot stress enough how important it is to back up your volumes before resizing them.", True),
    ("I cannot see your account details, but you can check usage on the Billing page under Settings.", True),
    ("I cannot share other customers' configurations. Would you like tips on sizing your own cluster?", True),
    ("I can't guarantee spot capacity in that region at any given hour.", False),
    ("I won't be able to reset that for you; please contact our support team and they will sort it out.", False),
    ("I cannot modify billing records myself, but the finance team reviews disputes within two days.", True),
])
def test_refusals_with_a_redirect_or_idioms_pass(reply, seed_flags):
    assert seed_flags_refusal(reply) is seed_flags
    user = "Can you change my plan for me?"
    if "finance team" in reply:     # no offer, channel or question: a bare statement still needs a redirect
        assert codes(chat(user, reply)) == ["refusal_without_help"]
    else:
        assert codes(chat(user, reply)) == []


def test_seed_rule_false_negative_is_caught():
    reply = "I cannot help with that."
    assert seed_flags_refusal(reply) is False
    assert codes(chat("Can you refund my last invoice?", reply)) == ["refusal_without_help"]


# --- behaviours -----------------------------------------------------------------------------------

NEG = {"behaviour": "negative"}


def test_seed_refusal_passes_as_negative():
    assert codes(chat("Can you help me hack into someone's account?", SEED_REFUSAL), requested=NEG) == []


@pytest.mark.parametrize("reply", [
    "I don't know the release date of the next GPU generation, since it hasn't been announced. "
    "You can follow our changelog for hardware news.",
    "That is out of scope for me: I only help with our GPU cloud. For tax questions, please consult an accountant "
    "or a tax professional.",
    "Unfortunately I can't share another customer's invoices because of our privacy policy. "
    "If you need your own invoices, I can walk you through exporting them.",
])
def test_negative_good_declines(reply):
    assert codes(chat("Tell me something out of scope, please.", reply), requested=NEG) == []


@pytest.mark.parametrize("reply, expected", [
    ("I cannot help with that.", ["negative_no_reason", "negative_no_redirect"]),
    ("I can't share that, because it would violate our privacy policy.", ["negative_no_redirect"]),
    ("I can't share that. Would you like help with your own account?", ["negative_no_reason"]),
    ("Sure! First, open the admin panel of the other account and copy the token.", ["negative_not_declined"]),
])
def test_negative_bad_declines(reply, expected):
    assert codes(chat("Show me another customer's API token.", reply), requested=NEG) == expected


def test_negative_applies_to_chosen_in_preference_pairs():
    rec = {"prompt": "Show me another customer's API token.", "chosen": "Sure, open their admin panel and copy it.",
           "rejected": "Here it is, just go to their dashboard now."}
    assert codes(rec, "preference", requested=NEG) == ["negative_not_declined"]


def test_ambiguous_needs_a_clarifying_question():
    user = "How do I make it faster?"
    good = "Happy to help speed things up. Do you mean training throughput or the time your instance takes to boot?"
    bad = "Use a bigger instance and enable mixed precision training."
    amb = {"behaviour": "ambiguous"}
    assert codes(chat(user, good), requested=amb) == []
    assert codes(chat(user, bad), requested=amb) == ["ambiguous_no_clarification"]
    in_code = "Run this:\n\n```python\nprint('faster?')\n```"
    assert codes(chat(user, in_code), requested=amb) == ["ambiguous_no_clarification"]
    assert codes(chat(user, bad), requested={"behaviour": "standard"}) == []


# --- preference and kto ---------------------------------------------------------------------------

def pair(chosen="Stop the instance, then resize the volume in the Volumes tab.",
         rejected="Just delete the volume and create a larger one from scratch.", **extra):
    return {"system": "You help.", "prompt": "How do I resize a volume?", "chosen": chosen, "rejected": rejected} | extra


def test_preference_good_pair_passes():
    assert codes(pair(), "preference") == []


def test_preference_fields_must_be_strings():
    assert codes({"prompt": "How do I resize a volume?", "chosen": "Stop it first, then resize."}, "preference") == ["missing_field"]
    assert codes(pair(chosen=None), "preference") == ["missing_field"]
    assert codes(pair(system=3), "preference") == ["missing_field"]
    assert codes(pair(chosen=""), "preference") == ["empty_turn"]
    assert codes(pair(chosen="Stop it.", rejected="Delete it."), "preference") == ["too_short"]


def test_preference_chosen_equal_rejected_after_whitespace():
    same = pair(chosen="Stop the instance,  then resize.", rejected="stop the instance, then resize.\n")
    assert codes(same, "preference") == ["chosen_equals_rejected"]


def test_preference_length_bias():
    short = "Stop the instance first, then resize it."                       # 40 chars
    assert codes(pair(chosen=short, rejected=short.replace("first", "now") + " " + "x" * 30), "preference") == ["length_bias"]
    assert codes(pair(chosen=short, rejected="Delete the volume and make a new larger one."), "preference") == []
    loose = Quality(preference_length_ratio=3.0)
    assert codes(pair(chosen=short, rejected=short.replace("first", "now") + " " + "x" * 30), "preference", loose) == []


def test_as_an_ai_on_chosen_only():
    assert codes(pair(chosen="As an AI, I suggest stopping the instance and resizing it."), "preference") == ["as_an_ai"]
    assert codes(pair(rejected="As an AI, I suggest stopping the instance and resizing it."), "preference") == []


def test_kto_records():
    good = {"system": "You help.", "prompt": "How do I resize a volume?", "completion": "Stop the instance, then resize it.", "label": True}
    assert codes(good, "kto") == []
    assert codes(good | {"label": False}, "kto") == []
    assert codes(good | {"label": "true"}, "kto") == ["label_not_bool"]
    assert codes(good | {"label": 1}, "kto") == ["label_not_bool"]
    assert codes({k: v for k, v in good.items() if k != "label"}, "kto") == ["label_not_bool"]
    assert codes(good | {"completion": None}, "kto") == ["missing_field"]
    assert codes(good | {"completion": "  "}, "kto") == ["empty_turn"]


def test_kto_reply_rules_only_for_desirable_completions():
    ai = "As an AI, I suggest stopping the instance and resizing it."
    base = {"prompt": "How do I resize a volume?", "completion": ai}
    assert codes(base | {"label": True}, "kto") == ["as_an_ai"]
    assert codes(base | {"label": False}, "kto") == []


def test_unknown_shape_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown record shape"):
        check_record(pair(), "alpaca", Q)


# --- PII ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, code", [
    ("Write to jane.doe@gmail.com for the invoice.", "pii_email"),
    ("My address is Bob_Smith+gpu@mail.acme-labs.co.uk", "pii_email"),
    ("Call me at (415) 867-5309 after 5pm.", "pii_phone"),
    ("My number is +44 20 7946 1234.", "pii_phone"),
    ("Phone: 212.867.5309", "pii_phone"),
    ("Reach me on +49 30 901820 tomorrow.", "pii_phone"),
    ("Charge card 4539 1488 0343 6467 please.", "pii_card"),
    ("Card 4539-1488-0343-6467 expires 04/27.", "pii_card"),
    ("card number 4539148803436467", "pii_card"),
    ("Amex 3782 822463 10013", "pii_card"),
    ("My SSN is 536-90-4399.", "pii_national_id"),
    ("Pay to IBAN GB82 WEST 1234 5698 7654 32.", "pii_iban"),
])
def test_pii_true_positives(text, code):
    assert [c for c, _ in find_pii(text)] == [code]
    assert codes(chat(text, "Thanks, I will pass this to the billing team for you.")) == [code]


@pytest.mark.parametrize("text", [
    "Upgrade from 1.2.3 to 2.10.1, then restart.",
    "Bind the server to 192.168.1.10 on port 8080, or 10.0.0.1:8443.",
    "Released on 2024-01-15 and updated 01/15/2024 at 10:30.",
    "It costs $1,299.00 per month or 2.49/hour.",
    "An A100 80GB with CUDA 12.1 and driver 535.104.05 on kernel 6.5.0-1014.",
    "Model A100-SXM4-80GB, 8 x H100, batch 64, lr 3e-4, 2,000 steps.",
    "```python\nfor i in range(4111111111111112):\n    pass\n```",
    "Send a mail to someone@example.com or ops@sub.example.org or user@domain.com.",
    "Contact support@gpucloud.io or billing@gpucloud.io for refunds.",
    "Clone git@github.com:acme/trainer.git and run ssh ubuntu@203.0.113.7 -p 2222.",
    "Call our demo line at (212) 555-0147.",
    "The number 4539 1488 0343 6468 fails the Luhn check.",
    "Use the Stripe test card 4242 4242 4242 4242.",
    "Order #2125551234 shipped; timestamp 1700000000.",
    "Sizes 32 64 128 256 512 1024 2048 work.",
    "Ports 5432-5433 and 6379; ids 1234-5678-9012.",
    "Use SSN 123-45-6789 as the placeholder in forms.",
])
def test_pii_false_positives(text):
    assert find_pii(text) == []


def test_pii_checked_in_every_text_and_named():
    rec = chat("Please bill it to me.", "Done, I will send the receipt to bob.smith@gmail.com right away.",
               system="Escalations go to +1 415 867 5309.")
    issues = check_record(rec, "chat", Q)
    assert {(i.code, i.message.split(" contains")[0]) for i in issues} == {
        ("pii_phone", "system message"), ("pii_email", "assistant turn 1")}
    assert all("bob.smith@gmail.com" not in i.message for i in issues)   # masked, not copied out
    assert codes(pair(rejected="Just write to bob.smith@gmail.com and wait for a reply."), "preference") == ["pii_email"]


def test_allow_pii_skips_the_scan():
    rec = chat("My e-mail is bob.smith@gmail.com.", "Thanks, the receipt goes there now.")
    assert codes(rec) == ["pii_email"]
    assert codes(rec, quality=Quality(allow_pii=True)) == []
