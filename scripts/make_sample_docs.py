"""Write the sample PDF and Word documents of data/sample from the Markdown sources kept in this script.

    python scripts/make_sample_docs.py           # (re)write the three files under data/sample
    python scripts/make_sample_docs.py --check   # exit 1 when a committed file differs from what this script writes
    python scripts/make_sample_docs.py --out DIR # write them under DIR instead

The files are byte-for-byte reproducible with the same fpdf2, fontTools and matplotlib: fixed creation and modification
dates, fixed metadata, the DejaVu fonts that matplotlib ships (embedded as subsets, so curly quotes and dashes survive),
and for the .docx a zip written with fixed member dates. Another fontTools version subsets the fonts into other bytes,
so `--check` compares what the loader reads (ids, page numbers, titles, text) when the bytes differ. `<!-- page -->` lines in the sources are page breaks: a new page in the PDFs; in the Word file an
explicit page break followed by the `w:lastRenderedPageBreak` marker Word itself writes, so both kinds are exercised.

- policies/recycling_takeback.pdf: 3 pages, outline (bookmarks) for every heading, bulleted lists.
- support/escalation_matrix.pdf: 2 pages, a table on page 2.
- support/agent_guidelines.docx: 5 pages, Title/Heading styles, bulleted and numbered lists, three tables."""
import argparse, datetime as dt, io, os, re, sys, tempfile, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEN = dt.datetime(2026, 1, 15, 9, 0, 0, tzinfo=dt.timezone.utc)
AUTHOR = "Kestrel Home Appliances"

RECYCLING = r"""# Recycling and Take-Back of Old Appliances

*Effective 1 January 2026.*

Electrical appliances do not belong in household waste. Kestrel takes back old appliances free of charge so that they can be recycled properly.

## In our stores

### EU stores
You can drop off **any small electrical appliance** with no side longer than 25 cm in any of our EU stores, free of charge and **without buying anything**. Larger appliances, such as vacuum cleaners, are taken back free of charge when you buy a new appliance of the same type (one for one).

<!-- page -->
### US stores
Our US stores accept small kitchen appliances and vacuum cleaners of any brand for recycling, free of charge, without a purchase.

## With an online order

When you order a new appliance online, you can request a free take-back label for an old appliance of the same type (for example, an old kettle when you buy a new kettle). The option is shown at checkout and in **My orders** for **30 days** after delivery. Pack the old appliance safely and drop it at DHL (EU) or UPS (US).

<!-- page -->
## Before you hand in an appliance

- Empty water tanks, dust bins and bean hoppers, and remove coffee grounds.
- Remove batteries from cordless devices if this can be done without tools, and hand them in separately. All our stores have a battery collection box.
- Delete personal data from connected devices: reset an Orbit robot vacuum to factory settings and remove it from the Kestrel Home app.

## What happens next

Collected appliances are sent to a certified recycling partner. We do not refurbish or resell appliances handed in for recycling, and we cannot return them once they have been handed in.
"""

ESCALATION = r"""# Escalation Matrix

*Internal – Kestrel Customer Care. Last reviewed February 2026.*

Use this matrix together with section 5 of the Customer Support Guidelines. When in doubt, escalate: a case that is escalated unnecessarily costs a few minutes, a safety case that is not escalated can cost much more.

## Tiers

### Tier 1 – Customer Care agents
Handle order status, returns, refunds, standard warranty cases, price match requests, loyalty questions and troubleshooting with the published guides. Goodwill up to 15 EUR / 15 USD.

### Tier 2 – Product specialists
Handle faults that the troubleshooting guides do not solve, repeated repairs, robot vacuum app and Wi-Fi problems, and espresso machine error codes that say “contact support” (for example E07 on the Pro Barista). Product specialists can approve a replacement instead of a repair when a product has already been repaired twice for the same fault.

### Tier 3 – Team leads and the Customer Care Manager
Handle complaints about the service itself, goodwill above 15 EUR / 15 USD, exceptions to policy and customers who ask for a supervisor.

<!-- page -->
## Specialist queues

| Queue | When | Target response |
|---|---|---|
| Product Safety | smoke, fire, sparks, shock, burns, swelling batteries, parts breaking off | 1 business hour |
| Payments | refund not received after the published time, double charges, chargebacks, suspected fraud | 1 business day |
| Loyalty | missing points after 30 days, tier corrections, merged accounts | 2 business days |
| Logistics | lost parcels, damaged deliveries, address changes after shipping | 1 business day |
| Legal | lawyers' letters, court documents, threats of legal action | 2 business days |
| Privacy | GDPR/CCPA requests, data breaches, data sent to the wrong customer | 1 business day |
| Press office | journalists and influencers | same day |

## Severity levels

- **Urgent:** safety incidents and data breaches. Assign immediately, call the queue's on-duty number if there is no reply within 30 minutes.
- **High:** customer without a working essential appliance after a failed repair, lost parcel for an order over 300 EUR/USD, third contact about the same problem.
- **Normal:** everything else.

## Handover checklist

Before escalating, make sure the ticket contains:
1. the verified customer and the order number;
2. the model number in the product field;
3. what has been tried so far;
4. what the customer is asking for;
5. what you have already told the customer about next steps.

Tell the customer which team will contact them and by when, using the target response time in the table above.
"""

GUIDELINES = r"""# Customer Support Guidelines for Agents

*Internal – Kestrel Customer Care, EU and US teams. Version 4.2, January 2026. Owner: Head of Customer Care.*

These guidelines describe how we talk to customers, what agents may decide on their own, and when a case has to be escalated. They apply to every channel: phone, live chat, email, social media messages and store referrals. Read them together with the policies (returns, refunds, warranty, shipping, price match, loyalty) – the policies are the source of truth for all customer-facing facts. If these guidelines and a policy ever disagree, follow the policy and tell your team lead.

## 1. Our service principles

### 1.1 Tone of voice
- **Friendly and direct.** Use the customer's name, write short sentences and avoid internal jargon (“RMA”, “WMS”, “T2”).
- **Own the problem.** Say “I will” rather than “the warehouse will”. If you hand a case over, tell the customer who will contact them and when.
- **No blame.** Never imply that the customer caused a fault unless the evidence is clear, and even then explain the policy calmly.
- **Be honest.** If you do not know the answer, say so and find out. Never guess delivery dates, repair outcomes or refund dates; quote the times from the policies.

### 1.2 Languages
The EU team answers in English, German, French, Spanish and Dutch; the US team in English and Spanish. Always reply in the language the customer used. If no agent speaks the language, reply in English and offer to continue in one of our supported languages. Do not use machine translation for complaints involving safety or legal topics.

### 1.3 Service levels
| Channel | Target | Hours |
|---|---|---|
| Phone | answer within 90 seconds | EU: Mon–Fri 08:00–20:00, Sat 09:00–16:00 (CET). US: Mon–Fri 8 AM–8 PM, Sat 9 AM–3 PM (Central Time) |
| Live chat | first reply within 2 minutes | same as phone |
| Email and contact form | first reply within 24 hours on business days | answered during phone hours |
| Social media messages | first reply within 4 hours during phone hours | – |

Customer service is closed on Sundays and on public holidays at the headquarters location (Berlin for EU, Chicago for US).

### 1.4 Contact details we give to customers
- EU hotline: +49 30 2555 0140
- UK hotline: +44 20 7946 0130 (answered by the EU team)
- US hotline: +1 (312) 555-0147
- Email: support@kestrelhome.example.com
- Pro line priority queue: press 1 after the language selection. Agents must check the model number; only customers who own a Pro line product (model number ending in “P”) may be handled in the priority queue.

## 2. Verifying the customer

Before you discuss or change an order, verify that you are talking to the account holder or the person who placed the order.

### 2.1 What to ask
- **Chat and email:** order number **and** the email address used for the order. If the customer writes from the order email address, the order number is enough.
- **Phone:** order number, full name **and** the postcode (ZIP code) of the delivery address.
- **Kestrel Circle members** can alternatively be verified with the one-time code sent by the app.

Kestrel order numbers have 16 digits and start with “70”. They are not card numbers, even though they have the same length.

### 2.2 What never to ask
Never ask for, and never write into a ticket:
- a full card number, the card expiry date or the security code (CVV/CVC);
- passwords or one-time codes for other services;
- a Social Security number or any other government ID number;
- the full IBAN, unless a refund must be paid by bank transfer (cash refunds above 250 EUR/USD or refunds for orders paid by SEPA transfer when the original account cannot be used).

### 2.3 When customers share sensitive data anyway
Customers sometimes paste a card number, an SSN or a photo of their ID into the chat. When this happens:
1. Do not repeat the data back.
2. Use the **Redact** button in the ticket on the message that contains it. Redaction replaces the data with `[REDACTED]` in the ticket and in the transcript.
3. Tell the customer politely that we do not need this information and that it has been removed. If a full card number was shared, suggest that they contact their bank if they are concerned.
4. Add the tag `pii-redacted` to the ticket.

<!-- page -->
## 3. Handling the most common requests

### 3.1 Where is my order?
1. Check the order status and the carrier tracking.
2. Standard delivery takes 3–5 business days, express 1–2 business days (orders placed before 14:00 local warehouse time on a business day ship the same day).
3. If tracking has not updated for 5 business days, or a standard parcel is more than 10 business days old, open a carrier investigation (macro `WISMO-INVESTIGATE`) and tell the customer we will update them within 3 business days.
4. If the carrier confirms the parcel as lost, offer a replacement or a full refund – the customer decides.

### 3.2 Returns
- Confirm the return window: **30 days**, or **60 days** for Kestrel Circle members. Check the membership flag on the order, not the current account status: the customer must have been a member when ordering.
- Check whether the item is a consumable. Opened consumables cannot be returned.
- Send the returns portal link. For customers in the UK, Switzerland, Norway, Canada, Alaska, Hawaii and Puerto Rico explain that they pay the return shipping.
- If the return window has passed by **up to 7 days**, you may accept the return as a goodwill gesture once per customer per year. Add the tag `late-return-goodwill`. Beyond 7 days, check whether the case is a warranty case instead.

### 3.3 Refunds
Quote the refund times from the Refunds Policy: refund issued within 5 business days of the return arriving at the warehouse, then 1–2 business days for PayPal, 3–10 business days for cards. Before that time has passed, do not open a payment investigation. Offer the store credit option (+10%) if the customer is undecided, but never push it.

### 3.4 Faulty products
1. Ask for the model number, the purchase date and a short description of the fault. Photos or a short video help.
2. Go through the relevant troubleshooting guide with the customer. Do not ask customers to open a product's housing.
3. Inside the return window: offer a refund or an advance replacement.
4. Inside the warranty period (2 years, 3 years for the Pro line): create a warranty case and send a prepaid label, or tell the customer they can drop the product off in any Kestrel store in their region.
5. Outside the warranty period: explain the out-of-warranty repair with the 25 EUR/USD diagnostic fee, which is credited against the repair cost.

### 3.5 Price match requests
Check the conditions in the Price Match Policy: authorised retailer in the same country, identical model number, in stock, within 14 days of the purchase, not during Black Friday weekend. Agents can approve valid price matches without a team lead. Each product can be matched once.

### 3.6 Loyalty questions
Points are pending for 30 days after delivery; do not add points manually to “speed things up”. If points are missing after 30 days, use the macro `CIRCLE-POINTS-MISSING`, which sends the case to the loyalty team. Never transfer points between an EU and a US account.

## 4. Goodwill gestures

Goodwill is for situations where we made a mistake or the customer had a clearly poor experience (late delivery, repeated contact, a repair that failed twice).

| Who | Can approve |
|---|---|
| Agent | a voucher or refund of up to **15 EUR / 15 USD** per case, or waiving the express shipping fee |
| Team lead | up to **50 EUR / 50 USD** per case, free express replacement |
| Customer Care Manager | anything above 50 EUR / 50 USD, full refunds outside policy |

Rules:
- One goodwill gesture per case. Document the reason in the ticket with the tag `goodwill`.
- Never offer goodwill in exchange for removing or changing a product review.
- Loyalty points are not a goodwill currency; use vouchers.

<!-- page -->
## 5. Escalation

### 5.1 Safety incidents – escalate immediately
A safety incident is any report of smoke, fire, sparks, melting plastic, an electric shock, a burn or scald caused by a product, a blade or part breaking off, or a battery swelling, getting very hot or leaking.

1. Tell the customer to **stop using the product and unplug it** (for cordless vacuums, do not charge the battery). If there is a fire or an injury, tell them to call the emergency services first.
2. Do not discuss fault or liability, and do not offer goodwill at this stage.
3. Create a ticket with priority **Urgent** and the tag `safety`, and assign it to the **Product Safety** queue. Product Safety contacts the customer within **1 business hour** during phone hours.
4. Ask the customer to keep the product and the packaging; Product Safety will arrange collection.

### 5.2 Other escalations
- **Legal threats, lawyers' letters or court documents:** forward to the Legal queue; do not reply on the content.
- **Journalists, bloggers or influencers** asking as press: forward to the press office at press@kestrelhome.example.com.
- **Data protection requests** (access, deletion, objection): forward to privacy@kestrelhome.example.com using the macro `GDPR-REQUEST`. Do not delete accounts yourself.
- **Suspected fraud** (for example several orders with different cards to the same address, or a customer asking to change the delivery address after shipping): tag `fraud-review` and assign to the Payments team.
- **Complaints about a colleague or a store:** escalate to your team lead.

See the Escalation Matrix for queues, response times and contacts.

## 6. Writing good tickets

- Write a one-line **summary** that someone else can understand without reading the whole conversation.
- Use the **product field** with the model number (e.g. KHA-CM-300), not the product name.
- Record what troubleshooting was done and the result.
- Record the promised next step and the date.
- Close the ticket when the customer confirms the problem is solved. Tickets waiting for a customer reply are closed automatically after **7 days**; the customer can reopen them by replying.

<!-- page -->
## 7. Channels in detail

### 7.1 Phone
- Greet with your first name and “Kestrel Customer Care”.
- Summarise the problem back to the customer before you start solving it.
- Do not put customers on hold for more than 2 minutes without checking back.
- Call recordings are **not** made. Write your notes during or straight after the call.

### 7.2 Chat
- Handle at most 3 chats at the same time.
- If a chat needs more than 20 minutes of research, offer to continue by email and convert the chat into an email ticket.
- Use the macros, but always personalise the first sentence.

### 7.3 Email
- One email should answer all questions the customer asked. Re-read the customer's message before you send.
- Sign with your first name and the team name, never with your surname or direct phone number.

### 7.4 Social media
- Answer public comments with a short, friendly message and move the conversation to private messages. Never ask for order numbers in a public comment.

## 8. Stores and customer service working together

- Customers can return items and drop off warranty repairs in any store in their region (EU or US). Stores cannot process returns for the other region.
- If a store asks customer service for help, treat the store colleague as a customer and use the internal store line, not the public hotline.
- Store opening hours are listed in the store hours document. Do not promise Click & Collect pickup outside opening hours.

<!-- page -->
## 9. Quality assurance

Team leads review 5 tickets per agent every week using the QA scorecard: correct information (40%), verification and data protection (20%), tone (20%), documentation (20%). A ticket with a data protection mistake, such as a card number left unredacted, scores 0 in the data protection section regardless of the rest.

## 10. Quick reference

| Topic | Fact |
|---|---|
| Return window | 30 days; 60 days for Kestrel Circle members |
| Refund issued | within 5 business days of the return arriving at the warehouse |
| Warranty | 2 years; 3 years for the Pro line |
| Free standard shipping | orders over 49 EUR / 49 USD |
| Express shipping | 1–2 business days, 9.90 EUR / 9.90 USD, free for Gold members |
| UK, CH, NO shipping | 14.90 EUR, 5–8 business days |
| Canada shipping | 19.90 USD, 6–10 business days |
| Price match | within 14 days of purchase |
| Store credit bonus | +10% |
| Out-of-warranty diagnostic fee | 25 EUR / 25 USD |
| Agent goodwill limit | 15 EUR / 15 USD |
| Team lead goodwill limit | 50 EUR / 50 USD |
| Safety incident response | Product Safety within 1 business hour |
"""

PAGE = "<!-- page -->"
_INLINE = re.compile(r"\*\*(.+?)\*\*|\*(.+?)\*|`(.+?)`|\[(.+?)\]\((?:.+?)\)")


def blocks(md: str) -> list:
    "The Markdown subset of the sources as blocks: (h, level, text), (p, text), (ul, text), (ol, n, text), (table, rows), (page,)."
    out = []
    for line in md.split("\n"):
        s = line.strip()
        if not s:
            continue
        if s == PAGE:
            out.append(("page",))
        elif m := re.match(r"(#{1,6}) (.+)", s):
            out.append(("h", len(m.group(1)), m.group(2)))
        elif s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            if out and out[-1][0] == "table":
                out[-1][1].append(cells)
            else:
                out.append(("table", [cells]))
        elif s.startswith("- "):
            out.append(("ul", s[2:]))
        elif m := re.match(r"(\d+)\. (.+)", s):
            out.append(("ol", int(m.group(1)), m.group(2)))
        else:
            out.append(("p", s))
    return out


def spans(text: str) -> list:
    "(text, bold, italic) pieces of a line with **bold**, *italic*, `code` and [links](url)."
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False, False))
        bold, italic, code, link = m.groups()
        out.append((bold or italic or code or link, bold is not None, italic is not None))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False, False))
    return out


def plain(text: str) -> str:
    return "".join(t for t, _, _ in spans(text))


def _fonts(pdf) -> None:
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for style, name in [("", "DejaVuSans"), ("B", "DejaVuSans-Bold"), ("I", "DejaVuSans-Oblique"), ("BI", "DejaVuSans-BoldOblique")]:
        pdf.add_font("DejaVu", style, str(ttf / f"{name}.ttf"))


def _pdf_text(pdf, text: str, size: float = 10, indent: float = 0, prefix: str = "") -> None:
    pdf.set_left_margin(20 + indent)
    pdf.set_x(20 + indent)
    if prefix:
        pdf.set_font("DejaVu", "", size)
        pdf.write(5, prefix)
    for t, bold, italic in spans(text):
        pdf.set_font("DejaVu", ("B" if bold else "") + ("I" if italic else ""), size)
        pdf.write(5, t)
    pdf.ln(7)
    pdf.set_left_margin(20)


def render_pdf(md: str, title: str, subject: str) -> bytes:
    "A PDF of `md`: headings bigger and bookmarked (document outline), lists indented, tables drawn as tables."
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, 20)
    pdf.set_creation_date(WHEN)
    pdf.set_title(title)
    pdf.set_author(AUTHOR)
    pdf.set_subject(subject)
    pdf.set_creator("scripts/make_sample_docs.py")
    pdf.set_producer("llmops-nb sample documents")
    _fonts(pdf)
    pdf.add_page()
    for b in blocks(md):
        if b[0] == "page":
            pdf.add_page()
        elif b[0] == "h":
            size = {1: 18, 2: 14}.get(b[1], 12)
            pdf.start_section(plain(b[2]), level=b[1] - 1)
            pdf.set_font("DejaVu", "B", size)
            pdf.ln(2)
            pdf.multi_cell(0, size * 0.5, plain(b[2]), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif b[0] == "p":
            _pdf_text(pdf, b[1])
        elif b[0] == "ul":
            _pdf_text(pdf, b[1], indent=5, prefix="\u2022 ")
        elif b[0] == "ol":
            _pdf_text(pdf, b[2], indent=5, prefix=f"{b[1]}. ")
        elif b[0] == "table":
            pdf.set_font("DejaVu", "", 9)
            with pdf.table(text_align="LEFT", line_height=5, first_row_as_headings=True) as table:
                for row in b[1]:
                    r = table.row()
                    for cell in row:
                        r.cell(plain(cell))
            pdf.ln(4)
    return bytes(pdf.output())


def _docx_runs(par, text: str) -> None:
    for t, bold, italic in spans(text):
        run = par.add_run(t)
        run.bold, run.italic = bold or None, italic or None


def render_docx(md: str, title: str, subject: str) -> bytes:
    "A Word file of `md`: # as Title, ## and ### as Heading 1 and 2, List Bullet/List Number, Table Grid tables."
    import docx
    from docx.enum.text import WD_BREAK
    from docx.oxml import OxmlElement

    doc = docx.Document()
    cp = doc.core_properties
    cp.title, cp.author, cp.subject, cp.last_modified_by = title, AUTHOR, subject, AUTHOR
    cp.created = cp.modified = WHEN.replace(tzinfo=None)
    cp.revision, cp.comments, cp.keywords = 1, "", ""
    after_break = False
    for b in blocks(md):
        if b[0] == "page":
            doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
            after_break = True
            continue
        if b[0] == "h":
            par = doc.add_paragraph(plain(b[2]), style="Title" if b[1] == 1 else f"Heading {b[1] - 1}")
        elif b[0] == "table":
            table = doc.add_table(rows=len(b[1]), cols=len(b[1][0]))
            table.style = "Table Grid"
            for i, row in enumerate(b[1]):
                for cell, text in zip(table.rows[i].cells, row):
                    cell.text = ""
                    _docx_runs(cell.paragraphs[0], f"**{text}**" if i == 0 else text)
            continue
        else:
            style = {"p": None, "ul": "List Bullet", "ol": "List Number"}[b[0]]
            par = doc.add_paragraph(style=style)
            _docx_runs(par, b[-1])
        if after_break:  # Word marks where it last laid out a page break at the start of the page's first run
            par.runs[0]._r.insert(1 if par.runs[0]._r.rPr is not None else 0, OxmlElement("w:lastRenderedPageBreak"))
            after_break = False
    buf = io.BytesIO()
    doc.save(buf)
    return _fixed_zip(buf.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    "The same zip with every member dated 1980-01-01, so the bytes do not depend on when the script ran."
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, (1980, 1, 1, 0, 0, 0)), src.read(info.filename), zipfile.ZIP_DEFLATED)
    return out.getvalue()


def documents() -> dict:
    "Path under data/sample -> the file's bytes."
    return {
        "policies/recycling_takeback.pdf": render_pdf(RECYCLING, "Recycling and Take-Back of Old Appliances", "Customer policy"),
        "support/escalation_matrix.pdf": render_pdf(ESCALATION, "Escalation Matrix", "Internal - Kestrel Customer Care"),
        "support/agent_guidelines.docx": render_docx(GUIDELINES, "Customer Support Guidelines for Agents", "Internal - Kestrel Customer Care"),
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _content(data: bytes, rel: str) -> list:
    "What `load_file` reads from a document's bytes: (id, page, title, text) of each page."
    from llmops_nb.data import load_file

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / Path(rel).name
        f.write_bytes(data)
        return [(x.id, x.metadata.get("page"), x.metadata.get("title"), x.text) for x in load_file(f, rel)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed file reads differently")
    ap.add_argument("--out", default=str(ROOT / "data" / "sample"), help="folder to write under (default data/sample)")
    a = ap.parse_args(argv)
    bad = []
    for rel, data in documents().items():
        path = Path(a.out) / rel
        if a.check:
            if not path.is_file() or (path.read_bytes() != data and _content(path.read_bytes(), rel) != _content(data, rel)):
                bad.append(rel)
            continue
        _write(path, data)
        print(f"wrote {path} ({len(data) / 1000:.1f} kB)")
    if bad:
        print(f"differs from what scripts/make_sample_docs.py writes: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
