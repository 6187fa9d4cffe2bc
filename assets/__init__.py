"""Static files the dashboard serves (CSS, favicon); a package so a wheel install ships them."""
