"""Classify Playground: streamlit run app.py"""

import streamlit as st

st.set_page_config(page_title="Classify Playground", page_icon=":label:", layout="wide")

pages = [
    st.Page("playground/ui/classify_page.py", title="Classify", icon=":material/label:", default=True),
    st.Page("playground/ui/bulk_page.py", title="Bulk", icon=":material/table_view:"),
    st.Page("playground/ui/models_page.py", title="Models", icon=":material/model_training:"),
]
st.navigation(pages).run()
