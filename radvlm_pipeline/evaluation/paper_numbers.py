"""The paper's numbers, copied from its text (Tables 3-6), to print beside ours.

Figure 4's bars are only drawn in the paper, so its per-label values are not available to compare with;
Table 6 gives the macro-F1 that stands for it.
"""

# The paper's numbers, by our model partition name (RadVLM = the "all" recipe).
PAPER_TABLE_3 = {  # report generation: BertScore, Rouge-L, RadGraph F1, GREEN
    "llava_onevision": (35.5, 14.6, 7.2, 11.9),
    "llava_med": (30.1, 12.6, 4.7, 5.0),
    "radialog": (49.7, 22.4, 16.3, 24.4),
    "chexagent": (38.1, 22.9, 20.9, 28.5),
    "maira2": (47.9, 18.5, 13.5, 21.4),
    "all": (51.0, 24.3, 17.7, 24.9),
}
PAPER_TABLE_4 = {  # mAP (%): anatomical, abnormality, phrase grounding
    "chexagent": (6.2, 26.0, 69.7),
    "maira2": (19.8, 11.3, 80.1),
    "all": (85.3, 35.7, 82.8),
}
PAPER_TABLE_5 = {  # GPT-4o judge score: standard, grounded conversations
    "llava_onevision": (4.66, 3.85),
    "llava_med": (4.01, 3.43),
    "radialog": (4.57, 4.09),
    "all": (6.95, 6.55),
}
PAPER_CLASSIFICATION_MACRO_F1 = {"all": 48.4, "classification": 41.5}  # Table 6; Figure 4 has no numbers
PAPER_TABLE_6 = {  # recipe -> {column: paper value}
    "report_generation": {"RadGraph F1": 17.7, "GREEN": 25.4},
    "classification": {"Macro-F1": 41.5},
    "anatomical_grounding": {"Anatomical mAP": 83.0},
    "abnormality_grounding": {"Abnormality mAP": 27.1},
    "phrase_grounding": {"Phrase mAP": 64.6},
    "conversation": {"Judge": 6.28, "Judge (grounded)": 5.66},
    "all": {
        "RadGraph F1": 17.7,
        "GREEN": 24.9,
        "Macro-F1": 48.4,
        "Anatomical mAP": 85.3,
        "Abnormality mAP": 35.7,
        "Phrase mAP": 82.8,
        "Judge": 6.95,
        "Judge (grounded)": 6.55,
    },
}
